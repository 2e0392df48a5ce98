"""Resampling between voxel grids with scipy.ndimage, as nnU-Net v2's default_resampling.

Images use third-order splines, probabilities linear interpolation, label maps per-label
linear interpolation (one-hot, then argmax) so thin structures survive; a label outvoted
everywhere keeps the output voxels holding its voxels' centres, so none present disappears.
Grid mode aligns voxel edges, not centres, so resampling there and back keeps the field of view.

"Separate z": when a case (or else the target) is anisotropic, its coarse axis is resampled by
nearest neighbour and only the other two are interpolated, slice by slice, so thick slices are
not blended into each other (`separate_axis` decides the axis).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from unet.preprocessing.spacing import ANISOTROPY_RATIO


def anisotropic_axis(spacing: Sequence[float]) -> int | None:
    """The coarse axis of an anisotropic spacing (max/min > ANISOTROPY_RATIO), else None.

    As nnU-Net: the ratio must exceed the threshold, and when two or three axes share the
    largest spacing (e.g. (0.24, 1.25, 1.25)) there is no single coarse axis, so None.
    """
    spacing = np.asarray(spacing, dtype=float)
    if not spacing.max() / spacing.min() > ANISOTROPY_RATIO:
        return None
    coarse = np.flatnonzero(spacing == spacing.max())
    return int(coarse[0]) if coarse.size == 1 else None


def separate_axis(spacing: Sequence[float], target_spacing: Sequence[float]) -> int | None:
    """The axis resampled by nearest neighbour ("separate z"), nnU-Net's decision: the case's
    own spacing decides when it is anisotropic (even when that gives None because of a tie),
    otherwise the target spacing, otherwise None. Used both ways (preprocessing and restoring)
    with the case's spacing first, so the same axis is chosen in both directions."""
    spacing = np.asarray(spacing, dtype=float)
    if spacing.max() / spacing.min() > ANISOTROPY_RATIO:
        return anisotropic_axis(spacing)
    return anisotropic_axis(target_spacing)


def _zoom(volume: np.ndarray, shape: Sequence[int], order: int, output=None, bounds=None) -> np.ndarray:
    """ndimage.zoom to `shape`, edges aligned; the result has the input's dtype. Splines are
    clipped to `bounds`, by default the input's range, as skimage's resize (nnU-Net's) does."""
    factors = [n / o for n, o in zip(shape, volume.shape)]
    out = ndimage.zoom(volume, factors, output=output, order=order, mode="nearest", grid_mode=True,
                       prefilter=order > 1)
    out = output if output is not None else out
    if order > 1:
        np.clip(out, *(bounds or (volume.min(), volume.max())), out=out)
    return out


def _zoom_slices(volume: np.ndarray, shape: Sequence[int], order: int, axis: int,
                 per_slice_bounds: bool) -> np.ndarray:
    """Interpolate the two axes other than `axis` with `order`, each slice along `axis` on its own
    (the same as 3D spline interpolation at whole voxels along `axis`, at a quarter of the cost).
    Splines are clipped to each slice's range (nnU-Net's separate z resizes 2D slices), or to
    the volume's (a 3D resize that happens to keep this axis)."""
    moved = np.moveaxis(volume, axis, 0)
    plane = tuple(n for a, n in enumerate(shape) if a != axis)
    out = np.empty((moved.shape[0],) + plane, dtype=volume.dtype)
    bounds = None if per_slice_bounds or order < 2 else (volume.min(), volume.max())
    for k in range(moved.shape[0]):
        _zoom(moved[k], plane, order, output=out[k], bounds=bounds)
    return np.moveaxis(out, 0, axis)


def nearest_indices(n: int, size: int) -> np.ndarray:
    """Source index of each of `size` output voxels resampling `n` voxels by nearest neighbour,
    edges aligned: nnU-Net's map_coordinates(order=0, mode="nearest") at (j + 0.5) * n / size - 0.5
    (ndimage rounds halves up)."""
    coords = (np.arange(size) + 0.5) * (float(n) / size) - 0.5
    return np.clip(np.floor(coords + 0.5), 0, n - 1).astype(np.intp)


def _nearest_along(volume: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Nearest-neighbour resampling of one axis to `size`: whole slices picked, so a take along
    that axis (several times faster than ndimage's order-0 zoom, and the same voxels)."""
    return np.take(volume, nearest_indices(volume.shape[axis], size), axis=axis)


def resample(volume: np.ndarray, shape: Sequence[int], order: int = 3,
             separate: int | None = None) -> np.ndarray:
    """Resample one (X, Y, Z) volume to `shape`, returned in the input's dtype.

    With `separate`, that axis is resampled by nearest neighbour after the in-plane
    interpolation. Axes whose size does not change are not interpolated at all (exact, and
    cheaper); an unchanged shape returns a copy.
    """
    shape = tuple(int(n) for n in shape)
    if volume.shape == shape:
        return volume.copy()
    keep = separate
    if keep is None:
        unchanged = [a for a in range(3) if volume.shape[a] == shape[a]]
        keep = unchanged[0] if unchanged else None
    if keep is None:
        return _zoom(volume, shape, order)
    in_plane = list(shape)
    in_plane[keep] = volume.shape[keep]
    out = volume if tuple(in_plane) == volume.shape else _zoom_slices(
        volume, in_plane, order, keep, per_slice_bounds=separate is not None)
    if out.shape[keep] != shape[keep]:
        out = _nearest_along(out, shape[keep], keep)
    return out if out is not volume else volume.copy()


def resample_channels(array: np.ndarray, shape: Sequence[int], order: int = 3,
                      separate_axis: int | None = None) -> np.ndarray:
    """Resample each channel of a channels-last (X, Y, Z, C) array to spatial `shape`, in float32
    (see `resample`)."""
    out = np.empty(tuple(shape) + array.shape[3:], dtype=np.float32)
    for c in range(array.shape[-1]):
        out[..., c] = resample(array[..., c].astype(np.float32, copy=False), shape, order, separate_axis)
    return out


def resample_labels(labels: np.ndarray, shape: Sequence[int], num_classes: int,
                    separate_axis: int | None = None) -> np.ndarray:
    """Resample a (X, Y, Z) map of class indices 0..num_classes-1: each class's one-hot mask is
    interpolated linearly and the best-scoring class wins. With `separate_axis`, classes are
    interpolated in-plane only and that axis is then resampled by nearest neighbour."""
    shape = tuple(int(n) for n in shape)
    if labels.shape == shape:
        return labels.copy()
    if separate_axis is None:
        in_plane = shape
    else:
        in_plane = tuple(labels.shape[a] if a == separate_axis else n for a, n in enumerate(shape))
    out = labels.copy()
    if in_plane != labels.shape:
        best = np.full(in_plane, -1.0, dtype=np.float32)
        out = np.zeros(in_plane, dtype=labels.dtype)
        # An absent class scores 0 everywhere and never wins: skip it.
        for k in np.flatnonzero(np.bincount(labels.ravel(), minlength=num_classes)[:num_classes]):
            score = resample((labels == k).astype(np.float32), in_plane, 1, separate_axis)
            better = score > best
            out[better] = k
            best[better] = score[better]
            del score, better
    if out.shape != shape:
        out = _nearest_along(out, shape[separate_axis], separate_axis)
    return _keep_every_label(labels, out, num_classes)


def _keep_every_label(labels: np.ndarray, out: np.ndarray, num_classes: int) -> np.ndarray:
    """A structure smaller or thinner than the output voxels can be outvoted everywhere (its
    interpolated score stays below 0.5, ties go to the lower class), or fall between the slices
    kept along a separate axis. Such a class keeps the output voxels that contain its voxels'
    centres, so no class present in the input vanishes."""
    present_in = np.flatnonzero(np.bincount(labels.ravel(), minlength=num_classes)[:num_classes])
    present_out = np.flatnonzero(np.bincount(out.ravel(), minlength=num_classes))
    for k in np.setdiff1d(present_in, present_out):
        where = np.nonzero(labels == k)
        idx = tuple(np.minimum(((i + 0.5) * m / n).astype(np.int64), m - 1)
                    for i, m, n in zip(where, out.shape, labels.shape))
        out[idx] = k
    return out
