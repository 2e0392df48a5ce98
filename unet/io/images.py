"""Reading and writing images in every supported format, behind one contract.

Whatever the format, an image is (array, affine): the array in the file's voxel order indexed
(x, y, z) or, with channels, (x, y, z, channel); the affine a 4x4 map from voxel indices to
RAS+ millimetres (nibabel's convention). Reorientation is `unet.io.orientation`'s job.

Formats, chosen by file ending (`FILE_ENDINGS`) or, for a folder, a DICOM series:

- NIfTI (.nii.gz, .nii) through nibabel (`unet.io.nifti`);
- NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) through SimpleITK (`unet.io.sitk_io`), which
  stores LPS geometry and (z, y, x) arrays: converted there;
- a DICOM series, a folder holding one series' slices (`unet.io.dicom`), also via SimpleITK.

Several channels sit in one file: NIfTI's 4th axis (MSD), a vector image (components per voxel)
or a 4D image in NRRD and MetaImage.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NIFTI = ".nii.gz"  # the default ending of datasets and predictions
NIFTI_ENDINGS = (".nii.gz", ".nii")
SITK_ENDINGS = (".nrrd", ".nhdr", ".mha", ".mhd")
FILE_ENDINGS = NIFTI_ENDINGS + SITK_ENDINGS
# Not a file ending: the "ending" of an image stored as a folder of DICOM slices, `{case}/`.
DICOM_SERIES = "dicom"


class ImageReadError(ValueError):
    """An image that cannot be read or does not have the expected shape; the message names it."""


def file_ending(path: str | os.PathLike) -> str | None:
    """The supported ending `path`'s name ends with (".nii.gz", ".nrrd", ...), or None."""
    name = Path(path).name.lower()
    return next((ending for ending in FILE_ENDINGS if name.endswith(ending)), None)


def strip_ending(path: str | os.PathLike) -> str:
    """'a/BRATS_001.nii.gz' -> 'BRATS_001'; a name without a supported ending is kept whole (a
    DICOM series' folder, say)."""
    name = Path(path).name
    ending = file_ending(name)
    return name[: -len(ending)] if ending else name


def image_ending(path: str | os.PathLike) -> str:
    """The format of an existing image: its file ending, or `DICOM_SERIES` for a folder."""
    if Path(path).is_dir():
        return DICOM_SERIES
    ending = file_ending(path)
    if ending is None:
        raise ImageReadError(f"{path}: not a supported image; supported are {', '.join(FILE_ENDINGS)} "
                             f"files and folders holding a DICOM series")
    return ending


def image_path(folder: str | os.PathLike, case_id: str, ending: str) -> Path:
    """Where case `case_id` of format `ending` lives in `folder`: `{case}{ending}`, or the
    folder `{case}` for a DICOM series."""
    return Path(folder) / (case_id if ending == DICOM_SERIES else f"{case_id}{ending}")


def read_image(path: str | os.PathLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(voxels (x, y, z) or (x, y, z, channel), affine 4x4), in the stored type unless `dtype`.
    Every read problem (missing, unsupported, truncated) is an `ImageReadError` naming `path`."""
    ending = image_ending(path) if Path(path).exists() else file_ending(path)
    if ending is None:
        raise ImageReadError(f"{path}: does not exist")
    if ending in NIFTI_ENDINGS:
        from unet.io.nifti import read_nifti

        return read_nifti(path, dtype)
    if ending == DICOM_SERIES:
        from unet.io.dicom import read_series

        return read_series(path, dtype)
    from unet.io.sitk_io import read_sitk

    return read_sitk(path, dtype)


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape `read_image` would return, from the header only (the voxels are not read)."""
    ending = image_ending(path) if Path(path).exists() else file_ending(path)
    if ending is None:
        raise ImageReadError(f"{path}: does not exist")
    if ending in NIFTI_ENDINGS:
        from unet.io.nifti import nifti_shape

        return nifti_shape(path)
    if ending == DICOM_SERIES:
        from unet.io.dicom import series_shape

        return series_shape(path)
    from unet.io.sitk_io import sitk_shape

    return sitk_shape(path)


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (array (X, Y, Z, C) float32, affine 4x4) of a 3D or multi-channel image."""
    data, affine = read_image(path, np.float32)
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise ImageReadError(f"{path}: expected a 3D or 4D image, got shape {data.shape}")
    return data, affine


def load_label(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (array (X, Y, Z) of integer label values, affine 4x4)."""
    data, affine = read_image(path)
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


def save_image(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray,
               dtype: np.dtype | type | None = None, ending: str | None = None) -> None:
    """Write `array` ((x, y, z) or (x, y, z, channel)) with `affine` in the format of `ending`
    (default: the ending of `path`'s name; `DICOM_SERIES` writes the folder `path`). Atomic: an
    interrupted write leaves no file under the final name."""
    ending = ending or file_ending(path)
    array = np.asarray(array if dtype is None else np.asarray(array).astype(dtype))
    if ending in NIFTI_ENDINGS:
        from unet.io.nifti import save_nifti

        save_nifti(path, array, affine)
    elif ending in SITK_ENDINGS:
        from unet.io.sitk_io import write_sitk

        write_sitk(path, array, affine)
    elif ending == DICOM_SERIES:
        from unet.io.dicom import write_series

        write_series(path, array, affine)
    else:
        raise ValueError(f"{path}: cannot write this format; supported endings: "
                         f"{', '.join(FILE_ENDINGS)}, or {DICOM_SERIES!r} for a DICOM series")
