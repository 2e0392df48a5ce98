"""Per-case evaluation tables: one row per case and foreground label or region.

Columns (`COLUMNS`, see DESIGN.md `evaluation/fold_{k}.csv`):

- case, fold (from `evaluate_folder`), label (name), label_value (int; empty for a region);
- dice, iou: overlap, with the `empty` convention of `unet.evaluation.metrics`;
- hd95, hd, asd: surface distances in mm (`unet.evaluation.distances`); nan (an empty field in
  the CSV) when the reference or the prediction is empty;
- ref_volume_ml, pred_volume_ml: voxel count x voxel volume (reference spacing) / 1000;
- tp, fp, fn, ref_voxels, pred_voxels: voxel counts.

A label named "ignore" (nnU-Net v2's sparse annotation, `unet.io.labels`) gets no row, and the
voxels it covers in the reference count in no row: they are left out of reference and
prediction alike.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from unet.data.splits import load_fold
from unet.evaluation.distances import bounding_box, surface_distances
from unet.evaluation.metrics import check_empty, confusion, dice_from_counts, iou_from_counts, \
    voxel_volume_ml
from unet.io.atomic import atomic_path
from unet.io.labels import ignore_value
from unet.io.msd import load_dataset
from unet.io.images import NIFTI, load_label, voxel_spacing
from unet.preprocessing.plan import Plan

COLUMNS = ["case", "fold", "label", "label_value", "dice", "iou", "hd95", "hd", "asd",
           "ref_volume_ml", "pred_volume_ml", "tp", "fp", "fn", "ref_voxels", "pred_voxels"]
FLOAT_COLUMNS = ["dice", "iou", "hd95", "hd", "asd", "ref_volume_ml", "pred_volume_ml"]
COUNT_COLUMNS = ["fold", "tp", "fp", "fn", "ref_voxels", "pred_voxels"]


@dataclass(frozen=True)
class Region:
    """A named set of label values evaluated as one mask, e.g. BraTS whole tumour = (1, 2, 3)."""

    name: str
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        values = tuple(int(v) for v in self.labels)
        if not values:
            raise ValueError(f"region {self.name!r} has no labels")
        if 0 in values:
            raise ValueError(f"region {self.name!r} includes background label 0")
        object.__setattr__(self, "labels", values)


def evaluation_regions(configured: Mapping[str, Sequence[int]] | None,
                       dataset_regions: Mapping[str, Sequence[int]] | None = None) -> list[Region]:
    """Regions to score: `configured` (config `evaluate.regions`) if given, even if empty;
    when it is None, the dataset's own (dataset.json "regions"); else none. (A model's regions
    default the other way: `unet.inference.regions.trained_regions`.)"""
    chosen = configured if configured is not None else (dataset_regions or {})
    return [Region(str(name), tuple(values)) for name, values in chosen.items()]


def foreground_labels(labels: Mapping[int, str]) -> list[tuple[int, str]]:
    """(value, name) of the foreground labels but the ignore label, sorted by value; keys may be
    ints or digit strings."""
    ignore = ignore_value(labels)
    out = [(int(value), str(name)) for value, name in labels.items()]
    return sorted((v, n) for v, n in out if v != 0 and v != ignore)


def _row(case_id: str, name: str, value: int | None, pred: np.ndarray, ref: np.ndarray,
         spacing: tuple[float, ...], empty: str) -> dict:
    tp, fp, fn = confusion(pred, ref)
    distances = surface_distances(pred, ref, spacing)
    nan = float("nan")
    voxel_ml = voxel_volume_ml(spacing)
    return {
        "case": case_id,
        "label": name,
        "label_value": value,
        "dice": dice_from_counts(tp, fp, fn, empty),
        "iou": iou_from_counts(tp, fp, fn, empty),
        "hd95": nan if distances is None else distances.hausdorff(95.0),
        "hd": nan if distances is None else distances.hausdorff(100.0),
        "asd": nan if distances is None else distances.average(),
        "ref_volume_ml": (tp + fn) * voxel_ml,
        "pred_volume_ml": (tp + fp) * voxel_ml,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "ref_voxels": tp + fn,
        "pred_voxels": tp + fp,
    }


def evaluate_case(case_id: str, pred: np.ndarray, ref: np.ndarray, labels: Mapping[int, str],
                  regions: Sequence[Region] = (), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                  empty: str = "nan") -> list[dict]:
    """Rows for one case: each foreground label (value != 0), then each region.

    `pred` and `ref` are label maps of the same shape holding the dataset's label values;
    `spacing` is the voxel size per array axis in mm; `empty` is "nan" or "one"
    (`unet.evaluation.metrics`). Region rows have `label` = region name, `label_value` = None.
    Voxels of the reference's ignore label (named "ignore" in `labels`) count nowhere.
    """
    check_empty(empty)
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"case {case_id}: prediction shape {pred.shape} differs from "
                         f"reference shape {ref.shape}")
    ignore = ignore_value(labels)
    if ignore is not None:  # unannotated: background in both, so no structure's mask holds them
        annotated = ref != ignore
        pred, ref = np.where(annotated, pred, 0), np.where(annotated, ref, 0)
    spacing = tuple(float(s) for s in spacing)
    # Every structure lies inside the box around all foreground: crop once, score the crop.
    box = bounding_box(pred != 0, ref != 0)
    if box is None:
        box = tuple(slice(0, 0) for _ in pred.shape)
    pred, ref = pred[box], ref[box]
    rows = [_row(case_id, name, value, pred == value, ref == value, spacing, empty)
            for value, name in foreground_labels(labels)]
    for region in regions:
        values = list(region.labels)
        rows.append(_row(case_id, region.name, None, np.isin(pred, values), np.isin(ref, values),
                         spacing, empty))
    return rows


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """The tidy table of `rows`, with `COLUMNS` in order and their dtypes."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["label_value"] = df["label_value"].astype("Int64")  # ints, <NA> for regions
    for col in FLOAT_COLUMNS:
        df[col] = df[col].astype(float)
    for col in COUNT_COLUMNS:
        df[col] = df[col].astype("int64")
    return df


def evaluate_folder(pred_dir: str | os.PathLike, ref_paths: Mapping[str, str | os.PathLike],
                    labels: Mapping[int, str], regions: Sequence[Region] = (),
                    fold: int = 0, empty: str = "nan", expected: Sequence[str] | None = None,
                    ending: str = NIFTI) -> pd.DataFrame:
    """Evaluate every `{case}{ending}` in `pred_dir` (the dataset's file_ending) against
    `ref_paths[case]`.

    `expected` (the fold's validation cases): a missing or extra prediction is an error naming
    the cases, never a mean over fewer cases.

    Distances and volumes use the reference's voxel spacing (a differing prediction spacing
    is warned about). Returns the tidy table (columns `COLUMNS`), cases in sorted order, with
    `fold` set. Raises ValueError if a prediction has no reference or the shapes differ
    (naming both files).
    """
    from tqdm import tqdm

    check_empty(empty)
    pred_dir = Path(pred_dir)
    pred_files = sorted(p for p in pred_dir.glob(f"*{ending}") if not p.name.startswith("."))
    if expected is not None:
        found = {p.name[: -len(ending)] for p in pred_files}
        missing, extra = sorted(set(expected) - found), sorted(found - set(expected))
        if missing or extra:
            raise ValueError(f"{pred_dir}: the predictions do not match fold {fold}'s validation cases: "
                             + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                                           f"not in the fold {extra}" if extra else "") if part)
                             + ". Rerun the fold's predict rule (--forcerun predict).")
    rows: list[dict] = []
    for pred_path in tqdm(pred_files, desc=f"evaluate fold {fold}", unit="case"):
        case = pred_path.name[: -len(ending)]
        if case not in ref_paths:
            raise ValueError(f"{pred_path}: no reference label for case {case!r}")
        ref_path = Path(ref_paths[case])
        pred, pred_affine = load_label(pred_path)
        ref, ref_affine = load_label(ref_path)
        if pred.shape != ref.shape:
            raise ValueError(f"shape mismatch: prediction {pred_path} has shape {pred.shape}, "
                             f"reference {ref_path} has shape {ref.shape}")
        spacing = voxel_spacing(ref_affine)
        if not np.allclose(voxel_spacing(pred_affine), spacing, rtol=1e-3):
            warnings.warn(f"voxel spacing differs: prediction {pred_path} "
                          f"{voxel_spacing(pred_affine).tolist()}, reference {ref_path} "
                          f"{spacing.tolist()}; distances use the reference's", stacklevel=2)
        for row in evaluate_case(case, pred, ref, labels, regions, spacing, empty):
            row["fold"] = int(fold)
            rows.append(row)
    return to_frame(rows)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `df` as CSV atomically; regions' label_value and nan values are empty fields."""
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


def evaluate_fold(predictions: str | os.PathLike, splits: str | os.PathLike, fold: int,
                  data_dir: str | os.PathLike, out: str | os.PathLike, *, plans: str | os.PathLike,
                  regions: Mapping[str, Sequence[int]] | None = None, empty: str = "nan") -> pd.DataFrame:
    """Rule `evaluate`: fold `fold`'s predictions (the folder `predictions`, exactly the fold's
    validation cases in `splits`) against the references of the dataset in `data_dir`, per label
    of the plan `plans` and per region (`regions`, config `evaluate.regions`: see
    `evaluation_regions`); the table written to `out` (CSV) and returned."""
    dataset = load_dataset(data_dir)
    scored = evaluation_regions(regions, dataset.regions)
    print(f"regions: {[(r.name, r.labels) for r in scored]}; empty structures: {empty}")
    table = evaluate_folder(predictions, {c.id: c.label for c in dataset.training}, Plan.load(plans).labels,
                            scored, fold=fold, empty=empty, expected=load_fold(splits, fold)["val"],
                            ending=dataset.file_ending)
    write_table(table, out)
    return table
