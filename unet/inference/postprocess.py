"""Postprocessing of predicted label maps: "keep only the largest connected component" of a set of
label values, the one operation nnU-Net v2's postprocessing applies (numpy and scipy only).

The steps to apply come from `postprocessing.json` (written by
`unet.evaluation.postprocessing.determine_postprocessing` from the cross-validation predictions):
its "apply" list, in order, each step {"operation": "keep_largest_component", "labels": [...]}.
A step joins the voxels of its label values into one mask, finds the mask's connected components
with full connectivity (26 neighbours in 3D, 8 in 2D; skimage's `label` default that nnU-Net uses)
and sets the voxels of every component but the largest to background (0). Components tied for
largest are all kept, as in nnU-Net.

`apply_postprocessing` works on arrays (`python -m unet predict` applies it as it writes each label
map); `postprocess_folder` on a folder of predictions in any format of `unet.io.images` (the
test-set rule `postprocess_test`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from unet.io.atomic import atomic_path, read_json
from unet.io.images import NIFTI_ENDINGS, file_ending, load_label, save_image

OPERATION = "keep_largest_component"
# One file holds the whole image (a detached header's voxels sit in a second file): copied as is.
_SINGLE_FILE = NIFTI_ENDINGS + (".nrrd", ".mha")


class PostprocessingError(ValueError):
    """A postprocessing.json this code cannot apply (unknown operation, malformed step)."""


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest connected component(s) of `mask`, full connectivity; all
    components tied for largest are kept. An empty mask gives an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask, structure=structure)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())[1:]
    keep = np.flatnonzero(sizes == sizes.max()) + 1
    return np.isin(components, keep)


def keep_largest_component(segmentation: np.ndarray, labels: Sequence[int],
                           background: int = 0) -> np.ndarray:
    """`segmentation` with every voxel of `labels` outside the largest connected component of
    their union set to `background`; a new array (the input is left alone)."""
    segmentation = np.asarray(segmentation)
    mask = np.isin(segmentation, [int(v) for v in labels])
    out = segmentation.copy()
    out[mask & ~largest_component(mask)] = background
    return out


def _steps(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[tuple[int, ...]]:
    """The label sets of the steps to apply, in order, from postprocessing.json's dict (its
    "apply" list) or from that list itself; anything else is a PostprocessingError."""
    steps = spec.get("apply") if isinstance(spec, Mapping) else spec
    if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
        raise PostprocessingError(f"postprocessing: expected a list of steps under 'apply', got {steps!r}")
    out = []
    for step in steps:
        if not isinstance(step, Mapping) or step.get("operation") != OPERATION:
            raise PostprocessingError(f"postprocessing: unknown step {step!r}; this version applies only "
                                      f"{{'operation': {OPERATION!r}, 'labels': [...]}}")
        labels = step.get("labels")
        if not isinstance(labels, Sequence) or not labels or any(isinstance(v, bool) or not isinstance(v, int)
                                                                  or v == 0 for v in labels):
            raise PostprocessingError(f"postprocessing: step {step!r} needs 'labels', a non-empty list of "
                                      f"foreground label values")
        out.append(tuple(labels))
    return out


def apply_postprocessing(segmentation: np.ndarray,
                         spec: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                         background: int = 0) -> np.ndarray:
    """The label map `segmentation` (2D or 3D, dataset label values) after the steps of `spec`
    (postprocessing.json as a dict, or its "apply" list), in order. Returns a new array of the
    same shape and dtype; with no steps, an unchanged copy."""
    out = np.array(segmentation, copy=True)
    for labels in _steps(spec):
        out = keep_largest_component(out, labels, background)
    return out


def describe_steps(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """The steps of `spec` in a line, e.g. "1 step(s): keep_largest_component [1, 2, 3]"."""
    steps = _steps(spec)
    return f"{len(steps)} step(s): " + (", ".join(f"{OPERATION} {list(labels)}" for labels in steps) or "none")


def load_postprocessing(path: str | os.PathLike) -> dict:
    """postprocessing.json, checked: its steps are ones `apply_postprocessing` knows."""
    spec = read_json(path)
    try:
        _steps(spec)
    except PostprocessingError as exc:
        raise PostprocessingError(f"{path}: {exc}") from None
    return spec


def label_dtype(values: np.ndarray) -> type:
    """The dtype the prediction rules write label maps in (unet.inference.restore)."""
    return np.uint8 if values.size == 0 or (values.min() >= 0 and values.max() < 256) else np.int16


def postprocess_file(source: str | os.PathLike, target: str | os.PathLike,
                     spec: Mapping[str, Any]) -> None:
    """Read the label map `source`, apply `spec`, write `target` in the same format (its ending)
    with the same affine. With no steps a single-file image is copied as it is."""
    ending = file_ending(source)
    if not _steps(spec) and ending in _SINGLE_FILE:
        with atomic_path(target, suffix=ending) as tmp:
            shutil.copyfile(source, tmp)
        return
    labels, affine = load_label(source)
    out = apply_postprocessing(labels, spec)
    save_image(target, out, affine, dtype=label_dtype(out))


def postprocess_folder(source_dir: str | os.PathLike, target_dir: str | os.PathLike,
                       spec: Mapping[str, Any] | str | os.PathLike) -> list[Path]:
    """Rule `postprocess_test`: every label map of `source_dir` (`{case}.nii.gz`, or another
    ending of `unet.io.images`) postprocessed into `target_dir` (created), in its own format.
    `spec`: postprocessing.json or its path. Other files (probabilities) are not carried over:
    postprocessing changes label maps only, as in nnU-Net."""
    if not isinstance(spec, Mapping):
        spec = load_postprocessing(spec)
    print(f"postprocessing: {describe_steps(spec)}")
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(source_dir).iterdir()):
        if path.name.startswith(".") or not path.is_file() or file_ending(path) is None:
            continue
        postprocess_file(path, target_dir / path.name, spec)
        written.append(target_dir / path.name)
    return written
