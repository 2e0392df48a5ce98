"""Surface distances in millimetres: Hausdorff distance (max and 95th percentile), ASD.

Conventions (those of MONAI, DeepMind's surface-distance and medpy):

- The surface of a mask is its voxels with at least one face neighbour (6-connectivity) outside
  the mask; voxels on the edge of the image count as surface (outside the image is background).
- A surface voxel's distance is the Euclidean distance, in mm (anisotropic spacing honoured),
  from its centre to the nearest voxel centre of the other mask's surface.
- HD (`hausdorff`) is the largest of these distances in either direction; HD95 is the larger of
  the two directed 95th percentiles (linear interpolation), so HD95 <= HD.
- ASD, the average symmetric surface distance, is the mean over the surface voxels of both masks
  of their distances to the other surface.
- When either mask is empty the distances are undefined: nan under both empty-structure
  conventions, so that summaries leave the case out of the means and count it.

Work is restricted to the bounding box of both masks: the box holds every surface voxel, and
voxels outside it are background in both masks, so cropping changes no distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

_FACE_NEIGHBOURS = {ndim: ndimage.generate_binary_structure(ndim, 1) for ndim in (1, 2, 3)}


def bounding_box(*masks: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box (one slice per axis) holding every True voxel of `masks`; None if all empty."""
    union = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other) if other else union)
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of `mask` with a face neighbour outside it (the image's outside counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    structure = _FACE_NEIGHBOURS.get(mask.ndim, ndimage.generate_binary_structure(mask.ndim, 1))
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surface voxel of one mask to the other mask's surface."""

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray

    def hausdorff(self, percentile: float = 100.0) -> float:
        """Larger of the two directed `percentile`-th percentiles; 100 gives the Hausdorff distance."""
        if percentile >= 100.0:
            return float(max(self.pred_to_ref.max(), self.ref_to_pred.max()))
        return float(max(np.percentile(self.pred_to_ref, percentile),
                         np.percentile(self.ref_to_pred, percentile)))

    def average(self) -> float:
        """Average symmetric surface distance: mean over both surfaces' voxels."""
        total = self.pred_to_ref.sum() + self.ref_to_pred.sum()
        return float(total / (self.pred_to_ref.size + self.ref_to_pred.size))


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or any(not s > 0 for s in values):
        raise ValueError(f"spacing {list(values)} must hold {ndim} positive values (mm per axis)")
    return values


def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: Sequence[float] | None = None) -> SurfaceDistances | None:
    """Surface distances of two same-shaped masks in mm; None if either mask is empty.

    `spacing` is the voxel size per array axis in mm (default 1 mm isotropic).
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    sampling = _spacing(spacing, pred.ndim)
    if not pred.any() or not ref.any():
        return None
    box = bounding_box(pred, ref)
    pred_surface = surface(pred[box])
    ref_surface = surface(ref[box])
    # Distance of every voxel of the box to the nearest surface voxel of the other mask.
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)
    return SurfaceDistances(pred_to_ref=np.asarray(to_ref[pred_surface], dtype=np.float64),
                            ref_to_pred=np.asarray(to_pred[ref_surface], dtype=np.float64))


def hausdorff(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
              percentile: float = 100.0) -> float:
    """Symmetric Hausdorff distance (mm) of the surfaces; nan if either mask is empty."""
    distances = surface_distances(pred, ref, spacing)
    return float("nan") if distances is None else distances.hausdorff(percentile)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile Hausdorff distance (mm); nan if either mask is empty."""
    return hausdorff(pred, ref, spacing, percentile=95.0)


def average_surface_distance(pred: np.ndarray, ref: np.ndarray,
                             spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance (mm); nan if either mask is empty."""
    distances = surface_distances(pred, ref, spacing)
    return float("nan") if distances is None else distances.average()
