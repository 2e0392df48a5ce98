"""Summary of per-case tables across folds (evaluation/summary.json).

Layout::

    {
      "labels":  {name: {"label_value": int,
                         "all":   {"mean", "std", "n_cases", "n_excluded"},
                         "folds": {"0": {"mean", "std", "n_cases", "n_excluded"}, ...}}},
      "regions": {name: {"all": {...}, "folds": {...}}},
      "mean_foreground_dice": {"all": float | None, "folds": {"0": float | None, ...}},
      "convention": "..."
    }

"all" pools every case of every fold (each training case is validated in exactly one fold).
Means and standard deviations leave out nan Dice rows (empty reference and empty
prediction); `n_cases` counts all rows, `n_excluded` the nan rows left out. nan -> None.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

CONVENTION = (
    "Dice per case follows nnU-Net: reference and prediction both empty -> nan; reference "
    "empty and prediction not -> 0; prediction empty and reference not -> 0. Means and "
    "population standard deviations (ddof=0) leave out nan cases; n_cases counts all cases, "
    "n_excluded the nan cases left out. 'all' pools the cases of every fold. "
    "mean_foreground_dice is the mean over labels (not regions) of the per-label means, "
    "per fold and across folds; labels without any non-nan case are left out of it. "
    "Values that are undefined are null."
)


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _stats(dice: pd.Series) -> dict:
    values = dice.to_numpy(dtype=float)
    valid = values[~np.isnan(values)]
    return {
        "mean": _num(valid.mean()) if valid.size else None,
        "std": _num(valid.std(ddof=0)) if valid.size else None,
        "n_cases": int(values.size),
        "n_excluded": int(values.size - valid.size),
    }


def _fold_key(fold) -> str:
    return str(int(fold))


def _group(df: pd.DataFrame) -> dict:
    out = {"all": _stats(df["dice"]), "folds": {}}
    if "fold" in df.columns:
        for fold in sorted(df["fold"].dropna().unique(), key=int):
            out["folds"][_fold_key(fold)] = _stats(df.loc[df["fold"] == fold, "dice"])
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summarize(tables: Sequence[pd.DataFrame]) -> dict:
    """Summarise per-case tables (one per fold, or any split) into a JSON-serialisable dict."""
    frames = [t for t in tables if len(t)]
    if not frames:
        return {"labels": {}, "regions": {},
                "mean_foreground_dice": {"all": None, "folds": {}}, "convention": CONVENTION}
    df = pd.concat(frames, ignore_index=True)
    is_region = df["label_value"].isna()

    labels: dict[str, dict] = {}
    label_rows = df[~is_region]
    order = (label_rows.assign(_v=label_rows["label_value"].astype(float))
             .sort_values("_v", kind="stable")
             .drop_duplicates("label")[["label", "_v"]])
    for name, value in order.itertuples(index=False):
        entry = {"label_value": int(value)}
        entry.update(_group(label_rows[label_rows["label"] == name]))
        labels[str(name)] = entry

    regions: dict[str, dict] = {}
    region_rows = df[is_region]
    for name in pd.unique(region_rows["label"]):
        regions[str(name)] = _group(region_rows[region_rows["label"] == name])

    folds = sorted({f for entry in labels.values() for f in entry["folds"]}, key=int)
    mean_fg = {
        "all": _mean_or_none([e["all"]["mean"] for e in labels.values()]),
        "folds": {f: _mean_or_none([e["folds"][f]["mean"] for e in labels.values()
                                    if f in e["folds"]]) for f in folds},
    }
    return {"labels": labels, "regions": regions, "mean_foreground_dice": mean_fg,
            "convention": CONVENTION}
