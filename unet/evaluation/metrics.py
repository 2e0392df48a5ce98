"""Overlap metrics on boolean masks (pure numpy).

Dice follows nnU-Net's convention for empty masks:

- reference and prediction both empty -> nan (the case says nothing about this class,
  and summaries leave it out of the mean);
- reference empty, prediction not -> 0.0 (every predicted voxel is a false positive);
- otherwise 2 TP / (2 TP + FP + FN), which is 0.0 for an empty prediction.
"""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    """Return (true positives, false positives, false negatives) of two same-shaped masks."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return tp, fp, fn


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice from confusion counts, with nnU-Net's empty-reference convention."""
    if tp + fn == 0:  # empty reference
        return float("nan") if fp == 0 else 0.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; nan if both are empty (see module docstring)."""
    return dice_from_counts(*confusion(pred, ref))
