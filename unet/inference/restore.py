"""Back from the preprocessed grid to the raw image grid, in the reverse order of preprocessing.

Probabilities are resampled to the cropped shape as nnU-Net's export resamples its logits: their
logits (log-probabilities for the softmax, log-odds for region sigmoids) are interpolated
linearly (nearest along the coarse axis of anisotropic data), then the softmax or sigmoid is
applied again. Interpolated probabilities blur a thin structure into its neighbours, and the
argmax then takes its edge voxels away: on the accuracy benchmark's 1-2-voxel vessel the same
network scored 0.902 Dice that way and 0.926 through the logits (docs/benchmarks.md). The result
is pasted into the canonical volume (background elsewhere), and the raw voxel order is restored.
For the label map the argmax is taken on the cropped grid, before pasting, and class indices
become the dataset's label values; the argmax of the restored probabilities is the same map,
since pasting and reorienting only move voxels. Region outputs (sigmoid per region) are painted
into label values the same way, on the cropped grid (`unet.inference.regions`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unet.inference.regions import Regions, labels_from_regions
from unet.preprocessing.cropping import paste
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.resampling import resample_channels, separate_axis


def probabilities_to_logits(probs: np.ndarray, regions: bool = False) -> np.ndarray:
    """float32 logits of (..., K) probabilities: the log of softmax probabilities (the logits up to
    a per-voxel constant, which the softmax ignores), or with `regions` the log-odds of each
    sigmoid channel. Probabilities that are 0 or 1 in float32 give large finite logits."""
    p = np.asarray(probs, dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    if not regions:
        return np.log(np.maximum(p, tiny))
    p = np.clip(p, tiny, 1.0 - np.finfo(np.float32).epsneg)
    return np.log(p) - np.log1p(-p)


def logits_to_probabilities(logits: np.ndarray, regions: bool = False) -> np.ndarray:
    """float32 probabilities of (..., K) logits: the softmax over the last axis, or with `regions`
    the sigmoid of each channel (the inverse of `probabilities_to_logits`)."""
    x = np.asarray(logits, dtype=np.float32)
    if regions:
        return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # the sigmoid, without overflow
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def probabilities_to_cropped(probs: np.ndarray, geometry: CaseGeometry, regions: bool = False) -> np.ndarray:
    """(X, Y, Z, K) float32 probabilities on the preprocessed grid -> the cropped raw-spacing grid,
    resampled through their logits (softmax probabilities, or with `regions` sigmoid ones)."""
    if tuple(probs.shape[:3]) != tuple(geometry.resampled_shape):
        raise ValueError(f"case {geometry.case}: probabilities of shape {probs.shape[:3]} do not match "
                         f"the preprocessed shape {tuple(geometry.resampled_shape)}")
    if tuple(probs.shape[:3]) == tuple(geometry.cropped_shape):
        return probs.astype(np.float32)  # nothing to interpolate: exactly the same probabilities
    # Separate z as in nnU-Net, the same axis as preprocessing chose for this case.
    axis = separate_axis(geometry.spacing, geometry.target_spacing)
    logits = resample_channels(probabilities_to_logits(probs, regions), geometry.cropped_shape, order=1,
                               separate_axis=axis)
    return logits_to_probabilities(logits, regions)


def cropped_to_raw(array: np.ndarray, geometry: CaseGeometry, fill=0) -> np.ndarray:
    """Paste a cropped-grid array (trailing axes kept) into the canonical volume, `fill` outside
    the crop box, and bring it to the raw file's voxel order."""
    canonical = paste(array, geometry.crop_box, geometry.canonical_shape, fill=fill)
    return geometry.reorientation.invert(canonical)


def labels_from_cropped(cropped: np.ndarray, geometry: CaseGeometry, label_values: Sequence[int],
                        regions: Regions | None = None) -> np.ndarray:
    """Label map in the raw voxel order and shape, holding the dataset's label values, from
    (X, Y, Z, K) probabilities on the cropped grid: their argmax, or with `regions` (channel r =
    the r-th region's sigmoid probability) the regions painted in nnU-Net's order
    (`unet.inference.regions.labels_from_regions`)."""
    if regions is not None:
        return cropped_to_raw(labels_from_regions(cropped, regions), geometry, fill=0)
    indices = np.argmax(cropped, axis=-1).astype(np.uint8)
    raw = cropped_to_raw(indices, geometry, fill=0)
    values = np.asarray(label_values)
    dtype = np.uint8 if values.max() < 256 and values.min() >= 0 else np.int16
    return values[raw].astype(dtype)


def probabilities_from_cropped(cropped: np.ndarray, geometry: CaseGeometry, regions: bool = False) -> np.ndarray:
    """(K, X, Y, Z) float32 probabilities in the raw voxel order and shape, from (X, Y, Z, K) on
    the cropped grid; outside the crop box the background (class 0) has probability 1, or with
    `regions` (sigmoid channels, no background channel) every region has probability 0."""
    background = np.zeros(cropped.shape[-1], dtype=np.float32)
    if not regions:
        background[0] = 1.0
    raw = cropped_to_raw(cropped.astype(np.float32, copy=False), geometry, fill=background)
    return np.ascontiguousarray(np.moveaxis(raw, -1, 0))


def restore_labels(probs: np.ndarray, geometry: CaseGeometry, label_values: Sequence[int],
                   regions: Regions | None = None) -> np.ndarray:
    """Label map in the raw file's voxel order and shape, holding the dataset's label values."""
    cropped = probabilities_to_cropped(probs, geometry, regions=regions is not None)
    return labels_from_cropped(cropped, geometry, label_values, regions)


def restore_probabilities(probs: np.ndarray, geometry: CaseGeometry, regions: bool = False) -> np.ndarray:
    """(K, X, Y, Z) probabilities in the raw file's voxel order and shape (see
    `probabilities_from_cropped`); `regions`: sigmoid channels, one per region."""
    return probabilities_from_cropped(probabilities_to_cropped(probs, geometry, regions), geometry, regions)
