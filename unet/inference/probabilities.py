"""Saved probabilities, `{case}.npz`: what `predict.save_probabilities` writes beside each label
map, and what ensembles average (the selection's pairs, `unet.evaluation.selection`; a pair
predicted by `python -m unet predict`, `unet.inference.standalone`).

A file holds `probabilities` (K, X, Y, Z) float32 in the raw image's voxel order and the dataset's
`label_values`; for a region model also `region_names` (K,) and `region_membership`
(K, len(label_values)). Averaging two files and taking the argmax (or painting the regions) is
nnU-Net's ensemble of configurations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from unet.inference.regions import Regions, labels_from_regions, region_membership
from unet.io.atomic import atomic_path


def save_probabilities(path: str | Path, probabilities: np.ndarray, label_values: Sequence[int],
                       regions: Regions | None = None) -> None:
    """Write `probabilities` (K, X, Y, Z) and the `label_values` of its K classes as a compressed
    NPZ, atomically. Kept in float32 so that its argmax is exactly the written label map.

    With `regions`, the K channels are the regions' sigmoid probabilities: `label_values` are then
    all the dataset's values, `region_names` (K,) name the channels and `region_membership`
    (K, len(label_values)) tells which values each region holds."""
    arrays = {"probabilities": np.asarray(probabilities, dtype=np.float32),
              "label_values": np.asarray(label_values, dtype=np.int64)}
    if regions is not None:
        arrays["region_names"] = np.asarray(list(regions), dtype=str)
        arrays["region_membership"] = region_membership(regions, label_values)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


@dataclass(frozen=True)
class Probabilities:
    """One case's saved probabilities: (K, X, Y, Z) float32, the dataset's `label_values`, and for
    a region model the `regions` ({name: label values}, channel k = the k-th region)."""

    probabilities: np.ndarray
    label_values: tuple[int, ...]
    regions: dict[str, tuple[int, ...]] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Probabilities":
        with np.load(path, allow_pickle=False) as npz:
            probs = np.asarray(npz["probabilities"], dtype=np.float32)
            values = tuple(int(v) for v in npz["label_values"])
            regions = None
            if "region_names" in npz:
                membership = np.asarray(npz["region_membership"], dtype=bool)
                regions = {str(name): tuple(v for v, inside in zip(values, row) if inside)
                           for name, row in zip(npz["region_names"], membership)}
        expected = len(regions) if regions is not None else len(values)
        if probs.shape[0] != expected:
            raise ValueError(f"{path}: {probs.shape[0]} probability channels for "
                             f"{'regions ' + str(list(regions)) if regions else 'label values ' + str(values)}")
        return cls(probs, values, regions)

    def labels(self) -> np.ndarray:
        """The label map: argmax over the classes, or the regions painted (threshold 0.5)."""
        if self.regions is not None:
            return labels_from_regions(np.moveaxis(self.probabilities, 0, -1), self.regions)
        return np.asarray(self.label_values)[np.argmax(self.probabilities, axis=0)]


def average(members: Sequence[Probabilities]) -> Probabilities:
    """The mean of the members' probabilities (same classes, same grid), as nnU-Net ensembles."""
    first = members[0]
    for other in members[1:]:
        if other.label_values != first.label_values or other.regions != first.regions:
            raise ValueError(f"cannot average probabilities of different classes: {first.label_values} "
                             f"{first.regions} and {other.label_values} {other.regions}")
        if other.probabilities.shape != first.probabilities.shape:
            raise ValueError(f"cannot average probabilities of shapes {first.probabilities.shape} and "
                             f"{other.probabilities.shape}")
    total = np.sum([m.probabilities for m in members], axis=0, dtype=np.float32) / np.float32(len(members))
    return Probabilities(total, first.label_values, first.regions)


def ensemble_labels(files: Sequence[str | os.PathLike]) -> np.ndarray:
    """The label map of one case from the averaged probabilities of `files` ({case}.npz)."""
    return average([Probabilities.load(f) for f in files]).labels()
