"""k-fold cross-validation splits: seeded, on sorted case ids (no TensorFlow here)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from unet.io.atomic import read_json


def make_splits(case_ids: Sequence[str], nfolds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """One {"train": [...], "val": [...]} per fold; every case is validated in exactly one fold."""
    ids = sorted(case_ids)
    if nfolds < 2 or nfolds > len(ids):
        raise ValueError(f"nfolds={nfolds} needs 2 <= nfolds <= number of training cases ({len(ids)})")
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, nfolds)
    return [{"train": sorted(ids[i] for i in order if i not in set(val)),
             "val": sorted(ids[i] for i in val)} for val in folds]


def load_fold(path: str | os.PathLike, fold: int) -> dict[str, list[str]]:
    splits = read_json(path)
    if not 0 <= fold < len(splits):
        raise ValueError(f"{path}: fold {fold} requested, the file has folds 0..{len(splits) - 1}")
    return splits[fold]
