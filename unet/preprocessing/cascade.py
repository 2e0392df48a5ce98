"""The previous stage's segmentation as the cascade's extra input (nnU-Net's 3d_cascade_fullres).

The 3d_cascade_fullres network takes, besides the image channels, the 3d_lowres segmentation as
one-hot channels of the foreground classes (nnU-Net's `convert_labelmap_to_one_hot(seg_prev,
foreground_labels)`), on the full-resolution preprocessed grid. The lowres predictions are label
maps in the raw geometry of each case (what rule predict writes); they reach that grid by the
path preprocessing takes for a case's label (`unet.preprocessing.preprocess.label_to_grid`:
reorient, crop, class indices, per-class linear resampling), so a prediction equal to the raw
label gives exactly the preprocessed `{case}_seg.npy`. nnU-Net takes that path at test time; for
its training cases it resamples the lowres probabilities to the fullres grid instead. We use the
label path for both, so training and test inputs are made alike.

Files: `write_previous_stage` writes `{out_dir}/{case}.npy`, uint8 class indices of the
preprocessed image's spatial shape; the shard stage appends their one-hot channels
(`previous_stage_channels`) to the image, prediction does the same for each case.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from unet.io.atomic import load_npy, save_npy
from unet.io.images import DICOM_SERIES, FILE_ENDINGS, image_path, load_label
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.plan import Plan
from unet.preprocessing.preprocess import label_to_grid
from unet.preprocessing.resampling import separate_axis


def previous_stage_indices(label_map: np.ndarray, geometry: CaseGeometry, plan: Plan,
                           source: str = "previous stage segmentation") -> np.ndarray:
    """A label map in the raw voxel order of its case (dataset label values, `geometry.raw_shape`)
    as uint8 class indices of `plan.label_values` on the case's preprocessed grid
    (`geometry.resampled_shape`), as preprocessing treats the case's label."""
    if tuple(label_map.shape) != tuple(geometry.raw_shape):
        raise ValueError(f"{source}: shape {tuple(label_map.shape)} is not case {geometry.case}'s raw shape "
                         f"{tuple(geometry.raw_shape)}")
    canonical = geometry.reorientation.apply(label_map)
    axis = separate_axis(geometry.spacing, geometry.target_spacing)
    return label_to_grid(canonical, geometry.crop_box, geometry.resampled_shape, axis, plan.label_values, source)


def previous_stage_channels(indices: np.ndarray, num_classes: int) -> np.ndarray:
    """(X, Y, Z, num_classes - 1) float32: the one-hot channels of the foreground classes 1.. of a
    class-index map (background has none), what the cascade's network takes after the image."""
    if indices.size and int(indices.max()) >= num_classes:
        raise ValueError(f"previous stage segmentation holds class index {int(indices.max())}, but the plan has "
                         f"{num_classes} classes")
    return (indices[..., None] == np.arange(1, num_classes, dtype=indices.dtype)).astype(np.float32)


def find_previous_stage(folders: Sequence[str | os.PathLike], case_id: str, stage: str | None = None) -> Path:
    """The one `{case}{ending}` (any image format `unet.io.images` reads, or a DICOM series'
    folder `{case}`) among `folders`; an error naming the case and the folders if none or several
    hold one. `stage` (e.g. 3d_lowres) names the predictions in the error."""
    what = f"{stage} prediction" if stage else "previous stage prediction"
    candidates = [image_path(folder, case_id, ending) for folder in folders for ending in (*FILE_ENDINGS, DICOM_SERIES)]
    found = [path for path in candidates if (path.is_dir() if path.name == case_id else path.is_file())]
    if not found:
        raise FileNotFoundError(f"case {case_id}: no {what} ({case_id}.nii.gz or another image format) in "
                                f"{', '.join(map(str, folders)) or 'no folder'}; predict it with the "
                                f"{stage or 'previous'} models first")
    if len(found) > 1:
        raise ValueError(f"case {case_id}: several {what}s: {', '.join(map(str, found))}; keep one")
    return found[0]


def read_previous_stage(path: str | os.PathLike, geometry: CaseGeometry, plan: Plan) -> np.ndarray:
    """`previous_stage_indices` of the label map at `path`, which must lie on its case's raw grid."""
    label_map, affine = load_label(path)
    if not np.allclose(affine, geometry.raw_affine, atol=1e-3):
        raise ValueError(f"{path}: its affine differs from case {geometry.case}'s image; a previous stage "
                         f"prediction must be written in the raw geometry of its case")
    return previous_stage_indices(label_map, geometry, plan, str(path))


def write_previous_stage(prediction_dirs: Sequence[str | os.PathLike], preprocessed_dir: str | os.PathLike,
                         case_ids: Sequence[str], out_dir: str | os.PathLike, plan: Plan) -> list[Path]:
    """For each case, its previous stage prediction (found in one of `prediction_dirs`) on the
    case's full-resolution preprocessed grid (`{case}.json` in `preprocessed_dir`): written to
    `{out_dir}/{case}.npy` as uint8 class indices, atomically. Returns the files written."""
    preprocessed_dir, out_dir = Path(preprocessed_dir), Path(out_dir)
    written = []
    for cid in case_ids:
        geometry = CaseGeometry.load(preprocessed_dir / f"{cid}.json")
        indices = read_previous_stage(find_previous_stage(prediction_dirs, cid, plan.previous_stage), geometry, plan)
        image_shape = load_npy(preprocessed_dir / f"{cid}.npy", mmap=True).shape[:3]
        if indices.shape != image_shape:
            raise ValueError(f"{preprocessed_dir / f'{cid}.json'}: its grid {indices.shape} is not the shape "
                             f"{image_shape} of {cid}.npy beside it; rerun preprocess for this case")
        save_npy(out_dir / f"{cid}.npy", indices.astype(np.uint8))
        written.append(out_dir / f"{cid}.npy")
    return written
