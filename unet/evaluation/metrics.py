"""Overlap metrics and volumes of boolean masks (pure numpy).

Empty structures follow one of two conventions, chosen with `empty` (config `evaluate.empty`):

- ``"nan"`` (default, nnU-Net): reference and prediction both empty -> nan (the case says
  nothing about this structure, and summaries leave it out of the mean);
- ``"one"`` (BraTS): reference and prediction both empty -> 1.0 (a correct "nothing here").

Under both, a reference that is empty while the prediction is not scores 0.0 (every predicted
voxel is a false positive), and so does an empty prediction of a non-empty reference. Otherwise
Dice = 2 TP / (2 TP + FP + FN) and IoU (Jaccard) = TP / (TP + FP + FN).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

EMPTY_CONVENTIONS = ("nan", "one")


def check_empty(empty: str) -> str:
    """Return `empty` if it names a convention, else raise ValueError naming the config key."""
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"evaluate.empty: {empty!r} is not one of {', '.join(EMPTY_CONVENTIONS)}")
    return empty


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


def _both_empty(empty: str) -> float:
    return float("nan") if check_empty(empty) == "nan" else 1.0


def dice_from_counts(tp: int, fp: int, fn: int, empty: str = "nan") -> float:
    """Dice from confusion counts, with the `empty` convention (module docstring)."""
    if tp + fp + fn == 0:  # reference and prediction both empty
        return _both_empty(empty)
    return 2.0 * tp / (2.0 * tp + fp + fn)


def iou_from_counts(tp: int, fp: int, fn: int, empty: str = "nan") -> float:
    """Intersection over union (Jaccard) from confusion counts, with the `empty` convention."""
    if tp + fp + fn == 0:
        return _both_empty(empty)
    return tp / (tp + fp + fn)


def dice(pred: np.ndarray, ref: np.ndarray, empty: str = "nan") -> float:
    """Dice coefficient of two boolean masks; both empty -> nan or 1.0 (see `empty`)."""
    return dice_from_counts(*confusion(pred, ref), empty=empty)


def iou(pred: np.ndarray, ref: np.ndarray, empty: str = "nan") -> float:
    """IoU (Jaccard index) of two boolean masks; both empty -> nan or 1.0 (see `empty`)."""
    return iou_from_counts(*confusion(pred, ref), empty=empty)


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in millilitres, from its spacing in millimetres (1 ml = 1000 mm^3)."""
    return float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0


def volume_ml(voxels: int, spacing: Sequence[float]) -> float:
    """Volume in millilitres of `voxels` voxels of the given spacing (mm)."""
    return int(voxels) * voxel_volume_ml(spacing)
