"""Resampling between voxel grids with scipy.ndimage.

Images use third-order splines, probabilities linear interpolation, label maps per-label
linear interpolation (one-hot, then argmax) so thin structures survive; a label outvoted
everywhere keeps the output voxels holding its voxels' centres, so none present disappears.
Grid mode aligns voxel edges, not centres, so resampling there and back keeps the field of view.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def shape_at_spacing(shape: Sequence[int], spacing: Sequence[float],
                     target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Number of voxels per axis once `shape` voxels of `spacing` are resampled to `target_spacing`."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def _zoom(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    if tuple(volume.shape) == tuple(shape):
        return volume.copy()
    factors = [n / o for n, o in zip(shape, volume.shape)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


ANISOTROPY_RATIO = 3.0  # nnU-Net's threshold for resampling the coarse axis on its own


def anisotropic_axis(spacing: Sequence[float]) -> int | None:
    """The coarse axis of an anisotropic spacing (max/min >= ANISOTROPY_RATIO), else None."""
    spacing = np.asarray(spacing, dtype=float)
    return int(np.argmax(spacing)) if spacing.max() / spacing.min() >= ANISOTROPY_RATIO else None


def resample_channels(array: np.ndarray, shape: Sequence[int], order: int = 3,
                      separate_axis: int | None = None) -> np.ndarray:
    """Resample each channel of a channels-last (X, Y, Z, C) float array to spatial `shape`.

    With `separate_axis` (nnU-Net's "separate z" for anisotropic data), the other axes are
    interpolated with `order` and that axis with nearest neighbour, so thick slices are not
    blended into each other.
    """
    out = np.empty(tuple(shape) + array.shape[3:], dtype=np.float32)
    for c in range(array.shape[-1]):
        channel = array[..., c].astype(np.float32, copy=False)
        if separate_axis is None:
            out[..., c] = _zoom(channel, shape, order)
        else:
            in_plane = list(shape)
            in_plane[separate_axis] = channel.shape[separate_axis]
            out[..., c] = _zoom(_zoom(channel, in_plane, order), shape, order=0)
    return out


def resample_labels(labels: np.ndarray, shape: Sequence[int], num_classes: int) -> np.ndarray:
    """Resample a (X, Y, Z) map of class indices 0..num_classes-1 via one-hot linear interpolation."""
    if tuple(labels.shape) == tuple(shape):
        return labels.copy()
    best = np.full(tuple(shape), -1.0, dtype=np.float32)
    out = np.zeros(tuple(shape), dtype=labels.dtype)
    for k in range(num_classes):
        score = _zoom((labels == k).astype(np.float32), shape, order=1)
        better = score > best
        out[better] = k
        best[better] = score[better]
    # A structure smaller or thinner than the output voxels can be outvoted everywhere (its
    # interpolated score stays below 0.5, ties go to the lower class). Such a class keeps the
    # output voxels that contain its voxels' centres, so no class present in the input vanishes.
    for k in np.setdiff1d(np.unique(labels), np.unique(out)):
        if not 0 <= k < num_classes:
            continue
        where = np.nonzero(labels == k)
        idx = tuple(np.minimum(((i + 0.5) * m / n).astype(np.int64), m - 1)
                    for i, m, n in zip(where, shape, labels.shape))
        out[idx] = k
    return out
