"""DICOM series through SimpleITK (GDCM): one folder holds one series, which is one 3D image.

Reading sorts the slices by their position along the slice normal (GDCM), so the image's third
axis always follows the normal of the rows and columns: a right-handed grid. Writing turns a
label map (or any integer image) into a series of single-frame slices, each carrying the tags a
viewer needs to place it (position, orientation, spacing; fresh study, series and frame-of-reference
UIDs); no patient data is written. DICOM stores coordinates as decimal strings of at most 16
characters, so a written grid reads back to within about 1e-12 mm, not bit for bit.
"""

from __future__ import annotations

import contextlib
import locale
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from unet.io.atomic import _UMASK
from unet.io.images import ImageReadError
from unet.io.sitk_io import from_sitk, sitk_error, to_sitk

_DS_LENGTH = 16  # characters of a DICOM decimal string (VR DS)
_INTEGER_TYPES = (np.uint8, np.int8, np.uint16, np.int16)


def series_files(folder: str | os.PathLike) -> list[str]:
    """The slices of the one DICOM series in `folder`, in GDCM's order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: does not exist (a DICOM series is a folder of slices)")
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise ImageReadError(f"{folder}: no DICOM series in this folder; a case given as a folder "
                             f"must hold the slices of one DICOM series")
    if len(ids) > 1:
        raise ImageReadError(f"{folder}: holds {len(ids)} DICOM series; give each series a folder "
                             f"of its own")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def read_series(folder: str | os.PathLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(array (x, y, z), RAS affine) of the DICOM series in `folder`."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series_files(folder))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(f"{folder}: cannot read the DICOM series ({sitk_error(exc)})") from exc
    return from_sitk(image, folder, dtype)


def series_shape(folder: str | os.PathLike) -> tuple[int, ...]:
    """(x, y, slices[, components]) from the first slice's header and the number of slices."""
    files = series_files(folder)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"{files[0]}: cannot read DICOM header ({sitk_error(exc)})") from exc
    size, components = reader.GetSize(), int(reader.GetNumberOfComponents())
    return (int(size[0]), int(size[1]), len(files)) + ((components,) if components > 1 else ())


def write_series(folder: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a 3D integer array as a DICOM series, one file per slice along its third axis, into
    `folder` (replaced as a whole: written beside it, then renamed)."""
    folder = Path(folder)
    image = to_sitk(_integer_voxels(folder, array), affine)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{folder}: a DICOM series is written from one channel, not "
                         f"{image.GetNumberOfComponentsPerPixel()}")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.linalg.det(direction) <= 0:
        raise ValueError(f"{folder}: DICOM slices stack along the normal of their rows and columns; "
                         f"this grid's third axis points the other way (a left-handed affine)")
    series = {
        "0008|0008": "DERIVED\\SECONDARY", "0008|0060": "OT", "0008|103e": "segmentation (unet)",
        "0020|000d": _new_uid(), "0020|000e": _new_uid(), "0020|0052": _new_uid(), "0020|0011": "1",
        "0020|0037": _ds(direction[:, 0].tolist() + direction[:, 1].tolist()),
        "0018|0050": _ds([image.GetSpacing()[2]]),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()  # the UIDs set below, not new ones per slice
        with _locale_kept():
            _write_slices(writer, image, series, staging)
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder normal permissions
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_slices(writer: sitk.ImageFileWriter, image: sitk.Image, series: dict[str, str],
                  staging: Path) -> None:
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in series.items():
            slice_.SetMetaData(tag, value)
        slice_.SetMetaData("0020|0013", str(k + 1))  # instance number
        slice_.SetMetaData("0020|0032", _ds(image.TransformIndexToPhysicalPoint((0, 0, k))))
        writer.SetFileName(str(staging / f"{k + 1:04d}.dcm"))
        writer.Execute(slice_)


def _new_uid() -> str:
    """A UID derived from a random UUID (DICOM PS3.5 B.2): no organisation root needed."""
    return f"2.25.{uuid.uuid4().int}"


@contextlib.contextmanager
def _locale_kept() -> Iterator[None]:
    """GDCM's writer leaves the process in the "C" locale (seen with SimpleITK 2.5), which turns
    Python's default text encoding into ASCII: put back whatever was set before."""
    before = locale.setlocale(locale.LC_ALL, None)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL, None) != before:
            locale.setlocale(locale.LC_ALL, before)


def _integer_voxels(folder: Path, array: np.ndarray) -> np.ndarray:
    """`array` in a type DICOM stores (8 or 16 bit integers); whole-number floats are converted."""
    array = np.asarray(array)
    if array.dtype in _INTEGER_TYPES:
        return array
    if not np.array_equal(np.rint(array), array):
        raise ValueError(f"{folder}: a DICOM series is written from integer voxels; round first")
    for dtype in (np.int16, np.uint16):
        info = np.iinfo(dtype)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(dtype)
    raise ValueError(f"{folder}: values {array.min()}..{array.max()} do not fit 16 bits")


def _ds(values) -> str:
    """Decimal strings (VR DS), each the most precise form within 16 characters."""
    def one(v: float) -> str:
        return next(s for p in range(17, 0, -1) if len(s := f"{float(v):.{p}g}") <= _DS_LENGTH)

    return "\\".join(one(v) for v in values)
