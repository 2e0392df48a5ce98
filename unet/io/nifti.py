"""NIfTI reading and writing with nibabel.

Images are returned channels-last, (X, Y, Z, C), in the file's own voxel order;
reorientation is `unet.io.orientation`'s job.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from unet.io.atomic import atomic_path


class ImageReadError(ValueError):
    """A NIfTI file that cannot be read or does not have the expected shape."""


def _load(path: str | os.PathLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(voxel array, affine 4x4). The data is read (and decompressed) once, inside the error
    handling, so a truncated file fails here with the file named."""
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel raises several types for broken files
        raise ImageReadError(f"{path}: cannot read NIfTI image ({exc})") from exc
    return data, img.affine.astype(np.float64)


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (array (X, Y, Z, C) float32, affine 4x4) of a 3D or 4D (MSD multi-channel) image."""
    data, affine = _load(path, np.float32)
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise ImageReadError(f"{path}: expected a 3D or 4D image, got shape {data.shape}")
    return data, affine


def load_label(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (array (X, Y, Z) of integer label values, affine 4x4)."""
    data, affine = _load(path)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageReadError(f"{path}: expected a 3D label map, got shape {data.shape}")
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        raise ImageReadError(f"{path}: label map holds non-integer values")
    return rounded.astype(np.int16), affine


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis, from the affine's column norms."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray,
               dtype: np.dtype | type | None = None) -> None:
    """Write `array` with `affine` atomically (temporary name, then rename)."""
    array = np.asarray(array if dtype is None else array.astype(dtype))
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(array.dtype)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    suffix = ".nii.gz" if str(path).endswith(".nii.gz") else Path(path).suffix
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
