"""Sliding-window inference over a whole volume with any predictor.

The volume is cut into overlapping patches of the training patch size, the predictor runs on
batches of patches, and the patch predictions are blended into one probability map: a weighted
average in which each patch contributes with a Gaussian importance map (voxels near a patch's
centre, where the network saw the most context, count most) or with constant weights.

Only numpy is used: the predictor is any callable from a batch (B, *patch, C) to probabilities
(B, *patch, K), so a Keras model's `predict_on_batch`, a test-time-augmentation wrapper or a
plain function in a test all fit.

A 2D predictor runs over every slice of a volume with `sliding_window_slices` (2d plans).

Memory: the probability sum (*padded shape, K) and the weight sum (*padded shape) are allocated
once and each patch is added in place, so the peak is about one volume of probabilities plus one
batch of patches.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

BLEND_MODES = ("gaussian", "constant")

# The predictor of every prediction path (here, unet.inference.predict and .benchmark): any callable
# from a batch of patches (B, *patch, C) to probabilities (B, *patch, K).
Predictor = Callable[[np.ndarray], np.ndarray]


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Gaussian weights over a patch, float32 of shape `patch_size`, maximum 1.

    The Gaussian is centred in the patch (at (p - 1) / 2 along an axis of p voxels, so the map is
    exactly mirror-symmetric) with sigma = `sigma_scale` * p per axis. Values that underflow to
    zero are replaced by the smallest non-zero value, so every voxel has a weight > 0 and every
    voxel covered by a window gets a defined average (nnU-Net's and MONAI's convention).
    """
    patch_size = _check_patch_size(patch_size)
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    weights = np.ones((), dtype=np.float64)
    for p in patch_size:
        coords = np.arange(p, dtype=np.float64) - (p - 1) / 2
        sigma = sigma_scale * p
        weights = np.multiply.outer(weights, np.exp(-0.5 * (coords / sigma) ** 2))
    weights = (weights / weights.max()).astype(np.float32)
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights


def window_starts(image_size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis of `image_size` voxels.

    Windows of `patch` voxels step by max(1, int(patch * (1 - overlap))); the last window is
    moved back to end flush with the axis, so every index is covered and no window sticks out.
    An axis no longer than the patch gets a single window at 0 (the caller pads it).
    """
    if image_size < 1 or patch < 1:
        raise ValueError(f"image_size and patch must be >= 1, got {image_size} and {patch}")
    _check_overlap(overlap)
    if image_size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    starts = list(range(0, image_size - patch + 1, step))
    if starts[-1] + patch < image_size:
        starts.append(image_size - patch)
    return starts


def sliding_window_inference(
    volume: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 1,
    num_classes: int | None = None,
) -> np.ndarray:
    """Predict a whole channels-last volume (X, Y, Z, C) patch by patch; return (X, Y, Z, K).

    `predictor` maps a batch (B, px, py, pz, C) to probabilities (B, px, py, pz, K); it is called
    with batches of at most `batch_size` windows (the last batch may be smaller). The result is
    the weighted average of the window predictions, float32, with weights from
    `gaussian_importance_map` (`blend="gaussian"`) or ones (`blend="constant"`).

    An axis shorter than the patch is padded with zeros, split evenly before and after (as for
    normalized images 0 is the mean intensity, like nnU-Net), and the result is cropped back to
    the original shape. `num_classes` (K) is taken from the first prediction when None.
    A 2D volume (X, Y, C) with a 2-entry `patch_size` works the same way.
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {', '.join(BLEND_MODES)}; got {blend!r}")
    patch_size = _check_patch_size(patch_size)
    _check_overlap(overlap)
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
    volume = np.asarray(volume, dtype=np.float32)
    ndim = len(patch_size)
    if ndim not in (2, 3) or volume.ndim != ndim + 1:
        raise ValueError(
            f"expected a channels-last volume with {ndim} spatial axes and one channel axis "
            f"(shape (X, Y, Z, C) for a 3-entry patch_size, (X, Y, C) for 2 entries); got volume "
            f"shape {volume.shape} and patch_size {patch_size}")

    shape = volume.shape[:ndim]
    pad_before = [max(p - s, 0) // 2 for s, p in zip(shape, patch_size)]
    pad_after = [max(p - s, 0) - b for s, p, b in zip(shape, patch_size, pad_before)]
    if any(pad_before) or any(pad_after):
        volume = np.pad(volume, list(zip(pad_before, pad_after)) + [(0, 0)], mode="constant")
    padded_shape = volume.shape[:ndim]

    if blend == "gaussian":
        weights = gaussian_importance_map(patch_size)
    else:
        weights = np.ones(patch_size, dtype=np.float32)
    channel_weights = weights[..., None]

    starts = [window_starts(s, p, overlap) for s, p in zip(padded_shape, patch_size)]
    windows = [tuple(slice(o, o + p) for o, p in zip(origin, patch_size))
               for origin in itertools.product(*starts)]

    prob_sum: np.ndarray | None = None
    weight_sum = np.zeros(padded_shape, dtype=np.float32)
    for first in range(0, len(windows), batch_size):
        batch_windows = windows[first:first + batch_size]
        batch = np.stack([volume[w] for w in batch_windows])
        probs = np.asarray(predictor(batch), dtype=np.float32)
        _check_prediction(probs, len(batch_windows), patch_size, num_classes)
        if prob_sum is None:
            num_classes = probs.shape[-1]
            prob_sum = np.zeros(padded_shape + (num_classes,), dtype=np.float32)
        for window, window_probs in zip(batch_windows, probs):
            prob_sum[window] += window_probs * channel_weights
            weight_sum[window] += weights

    prob_sum /= weight_sum[..., None]
    if any(pad_before) or any(pad_after):
        crop = tuple(slice(b, b + s) for b, s in zip(pad_before, shape))
        prob_sum = np.ascontiguousarray(prob_sum[crop])
    return prob_sum


def sliding_window_slices(
    volume: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int],
    slice_axis: int,
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 1,
    num_classes: int | None = None,
) -> np.ndarray:
    """A 2D predictor over every slice along `slice_axis` of a volume (X, Y, Z, C); return the
    stacked probabilities (X, Y, Z, K).

    `predictor` maps a batch of 2D windows (B, pa, pb, C) to (B, pa, pb, K), `patch_size` is
    (pa, pb) along the other two axes in order. Each slice gets `sliding_window_inference`'s 2D
    result; its batches hold windows of consecutive slices together (a window one voxel thick
    whose Gaussian weight is the 2D one), so a batch is full even when a slice has one window.
    """
    patch = _check_patch_size(patch_size)
    volume = np.asarray(volume, dtype=np.float32)
    if len(patch) != 2 or volume.ndim != 4 or slice_axis not in (0, 1, 2):
        raise ValueError(f"expected a volume (X, Y, Z, C), a 2-entry patch_size and a slice axis 0, 1 or 2; "
                         f"got volume shape {volume.shape}, patch_size {patch}, slice_axis {slice_axis}")

    def thick(batch: np.ndarray) -> np.ndarray:  # (B, 1, pa, pb, C) -> 2D predictor -> (B, 1, pa, pb, K)
        return np.asarray(predictor(batch[:, 0]))[:, None]

    probs = sliding_window_inference(np.moveaxis(volume, slice_axis, 0), thick, (1, *patch), overlap=overlap,
                                     blend=blend, batch_size=batch_size, num_classes=num_classes)
    return np.ascontiguousarray(np.moveaxis(probs, 0, slice_axis))


def _check_patch_size(patch_size: Sequence[int]) -> tuple[int, ...]:
    patch = tuple(int(p) for p in patch_size)
    if not patch or any(p < 1 for p in patch) or any(p != q for p, q in zip(patch, patch_size)):
        raise ValueError(f"patch_size must be positive integers, got {tuple(patch_size)}")
    return patch


def _check_overlap(overlap: float) -> None:
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")


def _check_prediction(probs: np.ndarray, batch: int, patch_size: tuple[int, ...],
                      num_classes: int | None) -> None:
    expected = (batch, *patch_size, num_classes if num_classes is not None else "K")
    if (probs.ndim != len(patch_size) + 2 or probs.shape[:-1] != (batch, *patch_size)
            or (num_classes is not None and probs.shape[-1] != num_classes)):
        raise ValueError(f"predictor returned shape {probs.shape} for a batch of {batch} "
                         f"patches; expected {expected}")
