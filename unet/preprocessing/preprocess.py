"""Per-case preprocessing: canonical orientation, crop, normalize, resample (nnU-Net's order).

Outputs per case, in `out_dir`: {case}.npy (X, Y, Z, C) float32, and for training cases
{case}_seg.npy (X, Y, Z) uint8 class indices (of `Plan.seg_label_values`: an ignore label is
kept, as the last index) and {case}_fg.npy foreground locations (see
`unet.preprocessing.locations`); then {case}.json geometry. Arrays are computed in full before
anything is written, and every file is written atomically, the geometry last, so a case whose
geometry JSON exists is complete.

Normalization statistics come from the original voxels (after cropping, before resampling).
The image is handled channel by channel, so besides the loaded case only one channel's
intermediates and the output are held at a time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from unet.io.atomic import save_npy
from unet.io.msd import Case, load_dataset
from unet.preprocessing.cropping import crop, mask_box, nonzero_mask
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.loading import load_case
from unet.preprocessing.locations import case_seed, foreground_locations
from unet.preprocessing.normalization import normalize_channel
from unet.preprocessing.plan import FULLRES, Plan
from unet.preprocessing.resampling import resample, resample_labels, separate_axis
from unet.preprocessing.spacing import shape_at_spacing


def values_to_indices(label: np.ndarray, values: tuple[int, ...], source: str = "label") -> np.ndarray:
    """Map dataset label values (e.g. 0, 1, 2, 4) to class indices 0..K-1."""
    values_arr = np.asarray(values)
    lo, hi = int(label.min()), int(label.max())
    small = lo >= 0 and hi < 2 ** 16  # then a lookup table beats sorting (np.unique)
    present = np.flatnonzero(np.bincount(label.ravel())) if small else np.unique(label)
    unknown = np.setdiff1d(present, values_arr)
    if unknown.size:
        raise ValueError(f"{source}: label values {unknown.tolist()} are not declared in dataset.json "
                         f"(declared: {list(values)})")
    if not small:
        return np.searchsorted(values_arr, label).astype(np.uint8)
    table = np.zeros(hi + 1, dtype=np.uint8)
    declared = values_arr[(values_arr >= 0) & (values_arr <= hi)]
    table[declared] = np.searchsorted(values_arr, declared)
    return table[label]


def label_to_grid(label: np.ndarray, box, shape, axis: int | None, values: tuple[int, ...],
                  source: str = "label") -> np.ndarray:
    """A canonical-order label map (dataset label values) on the preprocessed grid: cropped to
    `box`, mapped to class indices of `values`, resampled to `shape` (`resample_labels`, with
    `axis` as its separate axis). Preprocessing's path for a case's label, and the cascade's for
    the previous stage's segmentation (`unet.preprocessing.cascade`)."""
    seg = values_to_indices(crop(label, box), values, source)
    if seg.shape != tuple(shape):
        seg = resample_labels(seg, shape, len(values), separate_axis=axis)
    return seg


def preprocess_arrays(case: Case, plan: Plan) -> tuple[np.ndarray, np.ndarray | None, CaseGeometry]:
    """Preprocess one case in memory: (image, class-index seg or None, geometry)."""
    loaded = load_case(case, plan.num_channels)
    mask = nonzero_mask(loaded.image)
    box = mask_box(mask)
    mask = crop(mask, box)
    cropped_shape = mask.shape
    shape = shape_at_spacing(cropped_shape, loaded.spacing, plan.spacing)
    axis = separate_axis(loaded.spacing, plan.spacing)

    same = shape == cropped_shape  # at the target spacing already: nothing to resample, no copy
    image = np.empty(shape + (plan.num_channels,), dtype=np.float32)
    for c, norm in enumerate(plan.normalization):
        channel = normalize_channel(crop(loaded.image[..., c], box), norm, mask)
        image[..., c] = channel if same else resample(channel, shape, order=3, separate=axis)
        del channel
    if plan.nonzero_mask and not same:
        # Splines ring: zeros outside the mask come back as tiny values. Outside stays exactly 0,
        # so prediction can tell it apart (PredictSettings.background_outside_mask).
        outside = resample(mask.astype(np.float32), shape, order=1, separate=axis) < 0.5
        image[outside] = 0.0
        del outside
    seg = None
    if loaded.label is not None:
        seg = label_to_grid(loaded.label, box, shape, axis, plan.seg_label_values, str(case.label))

    geometry = CaseGeometry(
        case=case.id, raw_shape=loaded.raw_shape, raw_affine=loaded.raw_affine,
        reorientation=loaded.reorientation, canonical_shape=tuple(loaded.image.shape[:3]),
        spacing=loaded.spacing, crop_box=box, target_spacing=plan.spacing, resampled_shape=shape,
    )
    return image, seg, geometry


def preprocess_case(case: Case, plan: Plan, out_dir: str | Path) -> CaseGeometry:
    """Preprocess one case and write its files (see the module docstring). On failure no file of
    the case is left behind and the error carries a note naming the case."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    try:
        image, seg, geometry = preprocess_arrays(case, plan)
        arrays = {f"{case.id}.npy": image}
        if seg is not None:
            arrays[f"{case.id}_seg.npy"] = seg
            arrays[f"{case.id}_fg.npy"] = foreground_locations(seg, plan.num_classes, case_seed(case.id),
                                                               ignore_index=plan.ignore_index)
        for name, array in arrays.items():
            save_npy(out_dir / name, array)
            written.append(out_dir / name)
        geometry.save(out_dir / f"{case.id}.json")
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if hasattr(exc, "add_note"):  # Python 3.11+; loading errors name the file anyway
            exc.add_note(f"while preprocessing case {case.id!r} ({case.image})")
        raise
    return geometry


def preprocess_dataset_case(data_dir: str | os.PathLike, case_id: str, plans: str | os.PathLike,
                            out_dir: str | Path, configuration: str = FULLRES) -> CaseGeometry:
    """Rule `preprocess`: `preprocess_case` of case `case_id` of the dataset in `data_dir`, as
    `configuration` of the plans file `plans` says, into `out_dir`; what it did, and how long it
    took, printed."""
    start = time.perf_counter()
    case = load_dataset(data_dir).case(case_id)
    geometry = preprocess_case(case, Plan.load(plans, configuration), out_dir)
    print(f"{case.id}: crop {geometry.crop_box}, {geometry.cropped_shape} -> {geometry.resampled_shape} "
          f"at spacing {geometry.target_spacing} in {time.perf_counter() - start:.1f} s")
    return geometry
