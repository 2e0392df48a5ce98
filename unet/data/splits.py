"""k-fold cross-validation splits: seeded, on sorted case ids (no TensorFlow here).

Besides the folds 0..k-1 there is the fold `all` (nnU-Net's): every training case is trained on,
none validated, for the model that is deployed; it is no cross-validation fold, so it has no
predictions of its own and no evaluation.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from unet.io.atomic import read_json

ALL = "all"  # the fold that trains on every case
Fold = int | str  # 0..k-1, or ALL


def make_splits(case_ids: Sequence[str], nfolds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """One {"train": [...], "val": [...]} per fold; every case is validated in exactly one fold."""
    ids = sorted(case_ids)
    if nfolds < 2 or nfolds > len(ids):
        raise ValueError(f"nfolds={nfolds} needs 2 <= nfolds <= number of training cases ({len(ids)})")
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, nfolds)
    return [{"train": sorted(ids[i] for i in order if i not in set(val)),
             "val": sorted(ids[i] for i in val)} for val in folds]


def parse_fold(text: str | int) -> Fold:
    """A fold as a wildcard or config names it: "3" -> 3, "all" -> ALL."""
    if text == ALL:
        return ALL
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"fold {text!r}: expected a fold number or {ALL!r}") from None


def load_fold(path: str | os.PathLike, fold: Fold) -> dict[str, list[str]]:
    """Fold `fold` of the splits file; fold ALL trains on every case and validates none."""
    splits = read_json(path)
    if fold == ALL:
        return {"train": sorted(case for split in splits for case in split["val"]), "val": []}
    if not 0 <= fold < len(splits):
        raise ValueError(f"{path}: fold {fold} requested, the file has folds 0..{len(splits) - 1}")
    return splits[fold]
