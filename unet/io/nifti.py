"""NIfTI reading and writing with nibabel: the `unet.io.images` back end for .nii.gz and .nii.

Arrays are returned as stored, (X, Y, Z) or (X, Y, Z, C), with the file's affine.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from unet.io.atomic import atomic_path
from unet.io.images import ImageReadError


def read_nifti(path: str | os.PathLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(voxel array, affine 4x4). The data is read (and decompressed) once, inside the error
    handling, so a truncated file fails here with the file named."""
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel raises several types for broken files
        raise ImageReadError(f"{path}: cannot read NIfTI image ({exc})") from exc
    return data, img.affine.astype(np.float64)


def nifti_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The array shape from the header (the voxels are not read)."""
    try:
        return tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception as exc:  # nibabel raises several types for broken files
        raise ImageReadError(f"{path}: cannot read NIfTI header ({exc})") from exc


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
