"""Spacing questions: the target spacing every case is resampled to, what counts as anisotropic,
and how many voxels a shape has at another spacing.

One threshold, ANISOTROPY_RATIO, decides here (whether the coarse axis takes a finer target), in
`unet.preprocessing.resampling` (whether that axis is resampled on its own) and in
`unet.data.augmentation` (whether a patch is augmented in-plane only).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ANISOTROPY_RATIO = 3.0  # nnU-Net's ANISO_THRESHOLD: spacings further apart than this are anisotropic


def shape_at_spacing(shape: Sequence[int], spacing: Sequence[float],
                     target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Number of voxels per axis once `shape` voxels of `spacing` are resampled to `target_spacing`."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[float, ...]:
    """Median spacing; the coarse axis of anisotropic data takes its 10th percentile.

    As nnU-Net v2: anisotropic means the coarsest median spacing is over ANISOTROPY_RATIO times
    the next coarsest AND that axis has fewer than 1/ANISOTROPY_RATIO of the voxels of the
    smallest other axis (median shape after cropping, in the cases' own voxels). Thick-sliced
    volumes resampled to the median would interpolate too few slices; the 10th percentile keeps
    more of them, but never goes finer than the other axes.
    """
    spacings, shapes = np.asarray(spacings, dtype=float), np.asarray(shapes, dtype=float)
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != coarse]
    finest_other = max(target[a] for a in others)
    aniso_spacing = target[coarse] > ANISOTROPY_RATIO * finest_other
    aniso_voxels = median_shape[coarse] * ANISOTROPY_RATIO < min(median_shape[a] for a in others)
    if aniso_spacing and aniso_voxels:
        target[coarse] = max(float(np.percentile(spacings[:, coarse], 10)), finest_other)
    return tuple(float(s) for s in target)
