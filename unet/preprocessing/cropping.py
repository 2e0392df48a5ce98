"""Cropping to the non-zero region and pasting back (its inverse)."""

from __future__ import annotations

import numpy as np

Box = tuple[tuple[int, int], ...]  # (start, stop) per spatial axis


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Where any channel of a (X, Y, Z, C) image is non-zero; built channel by channel, so no
    boolean array of the image's full size is made."""
    mask = image[..., 0] != 0
    for c in range(1, image.shape[-1]):
        mask |= image[..., c] != 0
    return mask


def mask_box(mask: np.ndarray) -> Box:
    """Bounding box of the true voxels of a (X, Y, Z) mask; the whole extent when there are none."""
    if not mask.any():
        return tuple((0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def nonzero_box(image: np.ndarray) -> Box:
    """Bounding box of voxels non-zero in any channel of a (X, Y, Z, C) image.

    An all-zero image keeps its whole extent.
    """
    return mask_box(nonzero_mask(image))


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """Crop the leading spatial axes of `array` to `box`; trailing axes are kept."""
    return array[tuple(slice(lo, hi) for lo, hi in box)]


def paste(cropped: np.ndarray, box: Box, shape: tuple[int, ...], fill=0) -> np.ndarray:
    """Inverse of `crop`: place `cropped` at `box` inside a new array of spatial `shape`."""
    out = np.full(tuple(shape) + cropped.shape[len(box):], fill, dtype=cropped.dtype)
    out[tuple(slice(lo, hi) for lo, hi in box)] = cropped
    return out
