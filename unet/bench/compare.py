"""Our preprocessed cases against nnU-Net v2's, voxel by voxel.

nnU-Net's arrays are (C, z, y, x) in file order (SimpleITK) transposed by the plans'
`transpose_forward`; ours (X, Y, Z, C) in canonical RAS order. The axis mapping between them is
found on the first case among the 48 permutations/flips (checked against the one the two
conventions predict) and reused for all cases.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class AxisMapping:
    """Output spatial axis i is input axis perm[i], reversed where flips[i]; axes after the
    three spatial ones are carried along."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def apply(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.perm + tuple(range(3, array.ndim)))
        return np.flip(out, [i for i, f in enumerate(self.flips) if f]) if any(self.flips) else out

    def to_json(self) -> dict:
        return {"perm": list(self.perm), "flips": list(self.flips)}


def expected_mapping(to_canonical, transpose_forward) -> AxisMapping:
    """nnU-Net's axes -> ours, as the conventions predict: nnU-Net axis t is file axis
    2 - transpose_forward[t] (SimpleITK reverses the axes); file axis r is our canonical axis
    to_canonical[r][0], reversed where to_canonical[r][1] is -1 (a nibabel orientation)."""
    perm, flips = [0, 0, 0], [False, False, False]
    for r, (axis, flip) in enumerate(to_canonical):
        perm[int(axis)] = list(transpose_forward).index(2 - r)
        flips[int(axis)] = flip < 0
    return AxisMapping(tuple(perm), tuple(flips))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Voxelwise Pearson correlation (float64); NaN when either array is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else float("nan")


def find_mapping(ours: np.ndarray, theirs: np.ndarray) -> tuple[AxisMapping, float] | None:
    """The permutation/flips of `theirs` (3D) that best matches `ours` (3D), by correlation, among
    the 48 whose shape agrees; None when no permutation gives `ours`' shape."""
    best = None
    for perm in itertools.permutations(range(3)):
        if tuple(theirs.shape[p] for p in perm) != ours.shape:
            continue
        for flips in itertools.product((False, True), repeat=3):
            mapping = AxisMapping(perm, flips)
            score = pearson(mapping.apply(theirs), ours)
            if best is None or score > best[1]:
                best = (mapping, score)
    return best


def compare_case(case: str, ours: np.ndarray, theirs: np.ndarray, mapping: AxisMapping) -> dict:
    """One case: `ours` (X, Y, Z, C), `theirs` nnU-Net's (C, ...) brought to our axes by
    `mapping`; shapes and per-channel correlations (None where the shapes differ)."""
    theirs = mapping.apply(np.moveaxis(theirs, 0, -1))
    match = theirs.shape == ours.shape
    return {"case": case, "shape_ours": list(ours.shape[:3]), "shape_nnunet": list(theirs.shape[:3]),
            "shapes_match": match,
            "correlation": [pearson(ours[..., c], theirs[..., c]) for c in range(ours.shape[-1])]
            if match else None,
            "max_abs_difference": float(np.abs(ours - theirs).max()) if match else None}


def compare_outputs(ids: list[str], ours_dir: Path, nnunet_pre: Path, nnunet_npy: Path) -> dict:
    """Load both sides' outputs, find the axis mapping on the first case, compare every case.

    `ours_dir`: our run's folder (preprocessed/ inside); `nnunet_pre`: nnU-Net's preprocessed
    dataset folder (its plans); `nnunet_npy`: its images as .npy. Returns the `compare_case`
    results, the mapping found, nnU-Net's target spacing in our axis order and its normalization."""
    from unet.io.atomic import load_npy
    from unet.preprocessing.geometry import CaseGeometry

    plans = json.loads((nnunet_pre / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    ids = sorted(ids)
    first = CaseGeometry.load(ours_dir / "preprocessed" / f"{ids[0]}.json")
    expected = expected_mapping(first.reorientation.to_canonical, plans["transpose_forward"])
    mine = load_npy(ours_dir / "preprocessed" / f"{ids[0]}.npy")
    theirs = load_npy(nnunet_npy / f"{ids[0]}.npy")
    found = find_mapping(mine[..., 0], theirs[0])
    mapping = found[0] if found else expected
    info = {**mapping.to_json(), "expected": expected.to_json(),
            "agrees_with_expected": mapping == expected,
            "found_on": ids[0], "score": found[1] if found else None}
    cases = []
    for cid in ids:
        cases.append(compare_case(cid, load_npy(ours_dir / "preprocessed" / f"{cid}.npy"),
                                  load_npy(nnunet_npy / f"{cid}.npy"), mapping))
    return {"cases": cases, "axis_mapping": info,
            "spacing_nnunet": [float(config["spacing"][p]) for p in mapping.perm],
            "normalization": {"nnunet_normalization": config["normalization_schemes"],
                              "nnunet_use_mask_for_norm": config["use_mask_for_norm"]}}
