"""Region-based prediction: sigmoid probabilities per region -> a label map (numpy only).

nnU-Net's regions_class_order, derived from the regions themselves: regions are sorted from the
largest label set to the smallest; each paints the one label value it has that no smaller region
has. The label map starts at 0, and each region in that order sets the voxels where its
probability exceeds 0.5, so a smaller (inner) region overwrites the larger ones around it.
For BraTS, whole tumour {1, 2, 4} -> 2 (edema), tumour core {1, 4} -> 1, enhancing {4} -> 4.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from unet.io.atomic import read_json

Regions = Mapping[str, Sequence[int]]
THRESHOLD = 0.5


def trained_regions(setting, dataset_regions: Regions,
                    where: str = "train.regions") -> dict[str, list[int]] | None:
    """The regions a model is trained for (and so predicts), from config `train.regions`: None
    means none (softmax over labels), "dataset" the regions of dataset.json, or an explicit
    {name: [label values]}. (Scoring regions default the other way: `evaluation_regions`.)"""
    if setting is None:
        return None
    if setting == "dataset":
        if not dataset_regions:
            raise ValueError(f"config {where}: 'dataset', but dataset.json declares no \"regions\"")
        return {str(name): [int(v) for v in values] for name, values in dataset_regions.items()}
    if isinstance(setting, Mapping):
        return {str(name): [int(v) for v in values] for name, values in setting.items()}
    raise ValueError(f"config {where}: expected null, 'dataset' or {{name: [label values]}}, got {setting!r}")


def check_regions(regions: Regions, label_values: Sequence[int], where: str = "regions") -> None:
    """Every region is a non-empty set of foreground label values of the dataset."""
    if not regions:
        raise ValueError(f"{where}: no regions given")
    foreground = {int(v) for v in label_values if int(v) != 0}
    for name, values in regions.items():
        unknown = sorted({int(v) for v in values} - foreground)
        if not values or unknown:
            raise ValueError(f"{where}: region {name!r} must list foreground label values of the dataset "
                             f"({sorted(foreground)}); got {list(values)}")


def region_order(regions: Regions) -> list[tuple[int, int]]:
    """[(channel, label value)] in painting order: largest region first, each with the value no
    smaller region has. Raises if the regions are not nested (e.g. {1, 2} and {2, 3})."""
    sets = [frozenset(int(v) for v in values) for values in regions.values()]
    names = list(regions)
    order = sorted(range(len(sets)), key=lambda r: -len(sets[r]))  # stable: ties keep their order
    painted = []
    for r in order:
        smaller = set().union(*(s for s in sets if len(s) < len(sets[r])))
        own = sorted(sets[r] - smaller)
        if len(own) != 1:
            raise ValueError(f"regions must be nested to be turned into labels: region {names[r]!r} "
                             f"{sorted(sets[r])} has {len(own)} label values {own} that no smaller "
                             f"region has, expected exactly one ({dict(regions)})")
        painted.append((r, own[0]))
    # Painting ideal probabilities must give back every label value the regions cover.
    for value in set().union(*sets):
        label = 0
        for r, own in painted:
            if value in sets[r]:
                label = own
        if label != value:
            raise ValueError(f"regions must be nested to be turned into labels: a voxel of label {value} "
                             f"would be predicted as {label} ({dict(regions)})")
    return painted


def labels_from_regions(probs: np.ndarray, regions: Regions, threshold: float = THRESHOLD) -> np.ndarray:
    """(..., R) region probabilities (channel r = the r-th region of `regions`) -> label values."""
    probs = np.asarray(probs)
    if probs.shape[-1] != len(regions):
        raise ValueError(f"{probs.shape[-1]} probability channels for {len(regions)} regions {list(regions)}")
    painted = region_order(regions)
    top = max(value for _, value in painted)
    labels = np.zeros(probs.shape[:-1], dtype=np.uint8 if top < 256 else np.int16)
    for r, value in painted:
        labels[probs[..., r] > threshold] = value
    return labels


def region_membership(regions: Regions, label_values: Sequence[int]) -> np.ndarray:
    """(R, L) bool: region r contains label value label_values[l]. Saved beside region
    probabilities as it is; the region loss takes its transpose, (class index, region)."""
    return np.array([[int(v) in {int(x) for x in values} for v in label_values] for values in regions.values()],
                    dtype=bool)


def regions_from_setting(setting, dataset_ok: str | os.PathLike,
                         where: str = "train.regions") -> dict[str, list[int]] | None:
    """`trained_regions` for a run: "dataset" names the regions the download stage recorded in
    `dataset_ok` (from dataset.json), which is read only then."""
    found = read_json(dataset_ok).get("regions") if setting == "dataset" else None
    return trained_regions(setting, found, where)
