"""Back from the preprocessed grid to the raw image grid, in the reverse order of preprocessing.

Probabilities are resampled (linear) to the cropped shape, the argmax is pasted into the
canonical volume (background elsewhere), the raw voxel order is restored, and class indices
become the dataset's label values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unet.preprocessing.cropping import paste
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.resampling import resample_channels


def probabilities_to_cropped(probs: np.ndarray, geometry: CaseGeometry) -> np.ndarray:
    """(X, Y, Z, K) probabilities on the preprocessed grid -> the cropped raw-spacing grid."""
    if tuple(probs.shape[:3]) != tuple(geometry.resampled_shape):
        raise ValueError(f"case {geometry.case}: probabilities of shape {probs.shape[:3]} do not match "
                         f"the preprocessed shape {tuple(geometry.resampled_shape)}")
    return resample_channels(probs, geometry.cropped_shape, order=1)


def restore_labels(probs: np.ndarray, geometry: CaseGeometry, label_values: Sequence[int]) -> np.ndarray:
    """Label map in the raw file's voxel order and shape, holding the dataset's label values."""
    indices = np.argmax(probabilities_to_cropped(probs, geometry), axis=-1).astype(np.uint8)
    canonical = paste(indices, geometry.crop_box, geometry.canonical_shape, fill=0)
    raw = geometry.reorientation.invert(canonical)
    values = np.asarray(label_values)
    dtype = np.uint8 if values.max() < 256 and values.min() >= 0 else np.int16
    return values[raw].astype(dtype)
