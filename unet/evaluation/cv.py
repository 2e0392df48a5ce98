"""Cross-validation scores the way nnU-Net v2 computes them to choose postprocessing and the best
configuration (`unet.evaluation.postprocessing`, `unet.evaluation.selection`).

- The classes scored are the foreground labels (all but background and "ignore"), or, for a
  model trained on regions, its regions (each a set of label values scored as one mask).
- Per case and class: Dice = 2 TP / (2 TP + FP + FN); nan when reference and prediction are both
  empty (nnU-Net's convention, whatever `evaluate.empty` says: these choices follow nnU-Net's
  rule, and the reports' convention must not change them). Voxels the reference marks "ignore"
  count nowhere.
- Per class: the mean over the cases, leaving nan out; the foreground mean: the mean of the class
  means (nan if a class has no defined case, as in nnU-Net, which then changes nothing).
- The cross-validation predictions are the union of the folds' folders: each case once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from unet.evaluation.distances import bounding_box
from unet.evaluation.evaluate import Region, foreground_labels
from unet.evaluation.metrics import confusion, dice_from_counts


def scoring_classes(labels: Mapping[int, str], regions: Mapping[str, Sequence[int]] | None = None) -> list[Region]:
    """The classes to score: `regions` ({name: label values}, those a model was trained on) if
    given, else one per foreground label of `labels` ({value: name}), named by the label."""
    if regions:
        return [Region(str(name), tuple(values)) for name, values in regions.items()]
    return [Region(name, (value,)) for value, name in foreground_labels(labels)]


def foreground_values(labels: Mapping[int, str]) -> list[int]:
    """The foreground label values of `labels` but the ignore label, sorted."""
    return [value for value, _ in foreground_labels(labels)]


def case_dice(pred: np.ndarray, ref: np.ndarray, classes: Sequence[Region],
              ignore: int | None = None) -> np.ndarray:
    """(C,) Dice of each class for one case; nan where both masks are empty. `pred` and `ref`
    hold label values; voxels where `ref` is `ignore` are left out of both."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if ignore is not None:
        annotated = ref != ignore
        pred, ref = np.where(annotated, pred, 0), np.where(annotated, ref, 0)
    box = bounding_box(pred != 0, ref != 0)
    if box is None:
        return np.full(len(classes), np.nan)
    pred, ref = pred[box], ref[box]
    return np.array([dice_from_counts(*confusion(np.isin(pred, c.labels), np.isin(ref, c.labels)))
                     for c in classes])


def class_means(per_case: Iterable[np.ndarray], n_classes: int) -> np.ndarray:
    """(C,) mean Dice per class over the cases' (C,) rows, nan left out (nan if all are)."""
    rows = np.asarray(list(per_case), dtype=float).reshape(-1, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class with no defined case: nan
        return np.nanmean(rows, axis=0) if len(rows) else np.full(n_classes, np.nan)


def foreground_mean(means: np.ndarray) -> float:
    """The mean of the class means (nnU-Net's "foreground_mean"); nan if any is nan."""
    return float(np.mean(means)) if len(means) else float("nan")


def json_number(value: float) -> float | None:
    """A float for JSON: nan becomes null."""
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def by_class(classes: Sequence[Region], means: np.ndarray) -> dict[str, float | None]:
    """{class name: mean Dice} for JSON."""
    return {c.name: json_number(m) for c, m in zip(classes, means)}


def cv_files(folders: str | os.PathLike | Sequence[str | os.PathLike], suffix: str,
             expected: Sequence[str] | None = None) -> dict[str, Path]:
    """{case: file} of every `{case}{suffix}` in `folders` (the folds' prediction folders).

    A case in two folders, or (with `expected`, the cases of the folds) a case missing or extra,
    is an error naming them: a choice made on part of the cases would be wrong silently."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob(f"*{suffix}")):
            if path.name.startswith("."):
                continue
            case = path.name[: -len(suffix)]
            if case in found:
                raise ValueError(f"case {case!r} is predicted twice: {found[case]} and {path}")
            found[case] = path
    if not found:
        raise ValueError(f"no *{suffix} files in {', '.join(str(f) for f in folders)}")
    if expected is not None:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        if missing or extra:
            raise ValueError(f"the predictions in {', '.join(str(f) for f in folders)} do not match the "
                             f"folds' validation cases: "
                             + "; ".join(p for p in (f"missing {missing}" if missing else "",
                                                     f"not in the folds {extra}" if extra else "") if p))
    return dict(sorted(found.items()))
