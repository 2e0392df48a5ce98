"""Per-case preprocessing: canonical orientation, crop, normalize, resample (nnU-Net's order).

Outputs per case, in `out_dir`: {case}.npy (X, Y, Z, C) float32, {case}_seg.npy (X, Y, Z) uint8
class indices (training cases), {case}.json geometry. Arrays are computed in full before
anything is written, and every file is written atomically, the geometry last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet.io.atomic import save_npy
from unet.io.msd import Case
from unet.preprocessing.cropping import crop, nonzero_box
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.loading import load_case
from unet.preprocessing.normalization import normalize
from unet.preprocessing.planning import Plan
from unet.preprocessing.resampling import resample_channels, resample_labels, shape_at_spacing


def values_to_indices(label: np.ndarray, values: tuple[int, ...], source: str = "label") -> np.ndarray:
    """Map dataset label values (e.g. 0, 1, 2, 4) to class indices 0..K-1."""
    values_arr = np.asarray(values)
    present = np.unique(label)
    unknown = np.setdiff1d(present, values_arr)
    if unknown.size:
        raise ValueError(f"{source}: label values {unknown.tolist()} are not declared in dataset.json "
                         f"(declared: {list(values)})")
    return np.searchsorted(values_arr, label).astype(np.uint8)


def preprocess_arrays(case: Case, plan: Plan) -> tuple[np.ndarray, np.ndarray | None, CaseGeometry]:
    """Preprocess one case in memory: (image, class-index seg or None, geometry)."""
    loaded = load_case(case, plan.num_channels)
    box = nonzero_box(loaded.image)
    image = normalize(crop(loaded.image, box), list(plan.normalization))
    shape = shape_at_spacing(image.shape[:3], loaded.spacing, plan.spacing)
    image = resample_channels(image, shape, order=3)
    seg = None
    if loaded.label is not None:
        indices = values_to_indices(crop(loaded.label, box), plan.label_values, str(case.label))
        seg = resample_labels(indices, shape, plan.num_classes).astype(np.uint8)

    geometry = CaseGeometry(
        case=case.id, raw_shape=loaded.raw_shape, raw_affine=loaded.raw_affine,
        reorientation=loaded.reorientation, canonical_shape=tuple(loaded.image.shape[:3]),
        spacing=loaded.spacing, crop_box=box, target_spacing=plan.spacing, resampled_shape=shape,
    )
    return image, seg, geometry


def preprocess_case(case: Case, plan: Plan, out_dir: str | Path) -> CaseGeometry:
    """Preprocess one case and write its files (see the module docstring)."""
    image, seg, geometry = preprocess_arrays(case, plan)
    out_dir = Path(out_dir)
    save_npy(out_dir / f"{case.id}.npy", image)
    if seg is not None:
        save_npy(out_dir / f"{case.id}_seg.npy", seg)
    geometry.save(out_dir / f"{case.id}.json")
    return geometry
