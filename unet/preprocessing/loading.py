"""Loading one MSD case into canonical (RAS) voxel order, checked for consistency."""

from __future__ import annotations

from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np

from unet.io.msd import Case
from unet.io.images import ImageReadError, load_image, load_label, voxel_spacing
from unet.io.orientation import Reorientation


@dataclass
class CanonicalCase:
    id: str
    image: np.ndarray            # (X, Y, Z, C) float32, canonical order (a view: see load_case)
    label: np.ndarray | None     # (X, Y, Z) label values, canonical order
    spacing: tuple[float, ...]   # canonical axes, mm
    reorientation: Reorientation
    raw_shape: tuple[int, ...]   # spatial shape in the file
    raw_affine: np.ndarray


def load_case(case: Case, n_channels: int | None = None) -> CanonicalCase:
    """The case in canonical voxel order; image and label may be non-contiguous views."""
    image, affine = load_image(case.image)
    if n_channels is not None and image.shape[-1] != n_channels:
        raise ImageReadError(f"{case.image}: {image.shape[-1]} channels, but dataset.json "
                             f"declares {n_channels} modalities")
    # min/max propagate NaN and infinity without a boolean copy of the whole volume
    if not all(np.isfinite(image[..., c].min()) and np.isfinite(image[..., c].max())
               for c in range(image.shape[-1])):
        raise ImageReadError(f"{case.image}: contains NaN or infinite voxels")
    label = None
    if case.label is not None:
        label, label_affine = load_label(case.label)
        if label.shape != image.shape[:3]:
            raise ImageReadError(f"{case.label}: shape {label.shape} does not match image "
                                 f"{case.image} shape {image.shape[:3]}")
        if not np.allclose(label_affine, affine, atol=1e-3):
            raise ImageReadError(f"{case.label}: affine differs from image {case.image}")
    reorientation = Reorientation.from_affine(affine)
    # Flips and transposes as views, not copies (Reorientation.apply makes the array
    # C-contiguous): nibabel's arrays are Fortran-ordered, so each channel stays contiguous, and
    # copying the whole volume here would cost time and memory for voxels cropping drops.
    ornt = np.asarray(reorientation.to_canonical)
    return CanonicalCase(
        id=case.id,
        image=nio.apply_orientation(image, ornt),
        label=None if label is None else nio.apply_orientation(label, ornt),
        spacing=reorientation.spacing(voxel_spacing(affine)),
        reorientation=reorientation,
        raw_shape=tuple(int(n) for n in image.shape[:3]),
        raw_affine=affine,
    )
