"""Summary of per-case tables across folds (evaluation/summary.json and summary.html).

Layout::

    {
      "metrics": ["dice", "iou", "hd95", "hd", "asd", "ref_volume_ml", "pred_volume_ml"],
      "labels":  {name: {"label_value": int,
                         "all":   {metric: {"mean", "std", "median", "n_cases", "n_excluded"}},
                         "folds": {"0": {metric: {...}}, ...}}},
      "regions": {name: {"all": {...}, "folds": {...}}},
      "mean_foreground": {metric: {"all": float | None, "folds": {"0": float | None}}},
      "mean_foreground_dice": {"all": float | None, "folds": {"0": float | None, ...}},
      "empty": "nan" | "one",
      "convention": "..."
    }

"all" pools every case of every fold (each training case is validated in exactly one fold).
Each metric's statistics leave out its nan rows (undefined values: see `convention`);
`n_cases` counts all rows, `n_excluded` the nan rows left out. nan -> None (JSON null).
`mean_foreground[metric]` is the mean over labels (not regions) of the per-label means;
`mean_foreground_dice` repeats `mean_foreground["dice"]`.
"""

from __future__ import annotations

import html
import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from unet.evaluation.metrics import check_empty
from unet.io.atomic import atomic_path

METRICS = ("dice", "iou", "hd95", "hd", "asd", "ref_volume_ml", "pred_volume_ml")
# Metrics averaged over labels into `mean_foreground` (volumes are not scores).
SCORES = ("dice", "iou", "hd95", "hd", "asd")
# Column headers of summary.html.
HEADERS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95 (mm)", "hd": "HD (mm)", "asd": "ASD (mm)",
           "ref_volume_ml": "reference volume (ml)", "pred_volume_ml": "predicted volume (ml)"}

_EMPTY_TEXT = {
    "nan": "Dice and IoU follow nnU-Net: reference and prediction both empty -> nan (left out "
           "of the means); ",
    "one": "Dice and IoU follow BraTS: reference and prediction both empty -> 1; ",
}


def convention(empty: str = "nan") -> str:
    """The text of summary.json's `convention` key for the `empty` setting."""
    return (
        _EMPTY_TEXT[check_empty(empty)]
        + "reference empty and prediction not -> 0; prediction empty and reference not -> 0. "
        "Surface distances (hd95, hd, asd; mm, from the reference's voxel spacing) are nan when "
        "the reference or the prediction is empty. Surfaces are the voxels with a face neighbour "
        "outside the mask; hd95 is the larger of the two directed 95th percentiles of "
        "surface-to-surface distances, hd their maximum, asd their mean over both surfaces. "
        "Means, population standard deviations (ddof=0) and medians of each metric leave out "
        "its nan cases; n_cases counts all cases, n_excluded the nan cases left out. 'all' pools "
        "the cases of every fold. mean_foreground[metric] is the mean over labels (not regions) "
        "of the per-label means, per fold and across folds; labels without any non-nan case "
        "are left out of it. Values that are undefined are null."
    )


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _stats(series: pd.Series) -> dict:
    values = series.to_numpy(dtype=float)
    valid = values[~np.isnan(values)]
    return {
        "mean": _num(valid.mean()) if valid.size else None,
        "std": _num(valid.std(ddof=0)) if valid.size else None,
        "median": _num(np.median(valid)) if valid.size else None,
        "n_cases": int(values.size),
        "n_excluded": int(values.size - valid.size),
    }


def _all_stats(df: pd.DataFrame, metrics: Sequence[str]) -> dict:
    return {m: _stats(df[m]) for m in metrics}


def _group(df: pd.DataFrame, metrics: Sequence[str]) -> dict:
    out = {"all": _all_stats(df, metrics), "folds": {}}
    if "fold" in df.columns:
        for fold in sorted(df["fold"].dropna().unique(), key=int):
            out["folds"][str(int(fold))] = _all_stats(df[df["fold"] == fold], metrics)
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _mean_foreground(labels: dict, metric: str) -> dict:
    folds = sorted({f for entry in labels.values() for f in entry["folds"]}, key=int)
    return {
        "all": _mean_or_none([e["all"][metric]["mean"] for e in labels.values()]),
        "folds": {f: _mean_or_none([e["folds"][f][metric]["mean"] for e in labels.values()
                                    if f in e["folds"]]) for f in folds},
    }


def summarize(tables: Sequence[pd.DataFrame], empty: str = "nan") -> dict:
    """Summarise per-case tables (one per fold, or any split) into a JSON-serialisable dict.

    Summarises the columns of `METRICS` that the tables have (at least `dice`).
    """
    frames = [t for t in tables if len(t)]
    base = {"metrics": [], "labels": {}, "regions": {}, "mean_foreground": {},
            "mean_foreground_dice": {"all": None, "folds": {}},
            "empty": check_empty(empty), "convention": convention(empty)}
    if not frames:
        return base
    df = pd.concat(frames, ignore_index=True)
    metrics = [m for m in METRICS if m in df.columns]
    is_region = df["label_value"].isna()

    labels: dict[str, dict] = {}
    label_rows = df[~is_region]
    order = (label_rows.assign(_v=label_rows["label_value"].astype(float))
             .sort_values("_v", kind="stable")
             .drop_duplicates("label")[["label", "_v"]])
    for name, value in order.itertuples(index=False):
        entry = {"label_value": int(value)}
        entry.update(_group(label_rows[label_rows["label"] == name], metrics))
        labels[str(name)] = entry

    regions: dict[str, dict] = {}
    region_rows = df[is_region]
    for name in pd.unique(region_rows["label"]):
        regions[str(name)] = _group(region_rows[region_rows["label"] == name], metrics)

    mean_fg = {m: _mean_foreground(labels, m) for m in SCORES if m in metrics}
    return dict(base, metrics=metrics, labels=labels, regions=regions, mean_foreground=mean_fg,
                mean_foreground_dice=mean_fg.get("dice", base["mean_foreground_dice"]))


def _cell(stats: dict, digits: int) -> str:
    if stats["mean"] is None:
        text = "n/a"
    else:
        text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    if stats["n_excluded"]:
        text += f" ({stats['n_excluded']} of {stats['n_cases']} left out)"
    return text


def _digits(metric: str) -> int:
    return 3 if metric in ("dice", "iou") else 2


def _header(metric: str) -> str:
    return HEADERS.get(metric, metric)


def summary_tables(summary: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(across folds: structure x metric "mean ± std", Dice per fold: structure x fold)."""
    rows, per_fold = {}, {}
    for kind, entries in (("label", summary["labels"]), ("region", summary["regions"])):
        for name, entry in entries.items():
            key = name if kind == "label" else f"{name} (region)"
            rows[key] = {_header(m): _cell(entry["all"][m], _digits(m))
                         for m in summary["metrics"]}
            if "dice" in summary["metrics"]:
                per_fold[key] = {f"fold {f}": _cell(s["dice"], 3)
                                 for f, s in entry["folds"].items()}
                per_fold[key]["all"] = _cell(entry["all"]["dice"], 3)
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame.from_dict(per_fold,
                                                                                orient="index")


def write_summary_html(summary: dict, path: str | os.PathLike,
                       extra: Sequence[tuple[str, pd.DataFrame]] = ()) -> None:
    """A small self-contained HTML page with the summary's tables (for `snakemake --report`),
    then the `extra` tables, each (heading, table)."""
    across, per_fold = summary_tables(summary)
    mean_fg = summary["mean_foreground"]
    headline = ", ".join(f"{_header(m)} {v['all']:.{_digits(m)}f}"
                         for m, v in mean_fg.items() if v["all"] is not None)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation summary</title>",
        "<style>body{font-family:sans-serif;font-size:14px}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}</style></head><body>",
        "<h3>Mean over foreground labels (across folds)</h3>",
        f"<p>{html.escape(headline or 'no cases')}</p>",
        "<h3>Per label and region, all folds pooled: mean ± standard deviation</h3>",
        across.to_html(na_rep="", border=0) if len(across) else "<p>no cases</p>",
        "<h3>Dice per fold</h3>",
        per_fold.to_html(na_rep="", border=0) if len(per_fold) else "<p>no cases</p>",
        f"<p><small>{html.escape(summary['convention'])}</small></p>",
    ]
    for heading, table in extra:
        parts += [f"<h3>{html.escape(heading)}</h3>", table.to_html(na_rep="", border=0)]
    parts.append("</body></html>")
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text("\n".join(parts) + "\n")
