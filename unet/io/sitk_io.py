"""NRRD and MetaImage files through SimpleITK: the `unet.io.images` back end for .nrrd, .nhdr,
.mha and .mhd, and the geometry conversion that DICOM series (`unet.io.dicom`) share.

SimpleITK describes a voxel grid by origin, spacing and direction in LPS+ millimetres and gives
arrays indexed (z, y, x). Here they become the package's contract: arrays indexed (x, y, z) and
a 4x4 affine to RAS+, affine[:3, :3] = diag(-1, -1, 1) @ direction @ diag(spacing) and
affine[:3, 3] = diag(-1, -1, 1) @ origin. Writing inverts this (spacing = the affine's column
norms); both ways are exact up to float64 rounding (relative 1e-15), and NRRD itself stores the
product direction x spacing.

Channels: a vector image (components per voxel) or a 4D image whose 4th axis is not spatial;
multi-channel arrays are written as vector images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from unet.io.atomic import atomic_path
from unet.io.images import ImageReadError, voxel_spacing

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])  # diagonal: flips x and y, and back
# Formats that write the voxels to a second file, named in the header: written as a pair.
_DETACHED = (".mhd", ".nhdr")


def sitk_error(exc: Exception) -> str:
    """SimpleITK's message without its C++ source locations: the 'ERROR:' line if there is one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line.split("ERROR:", 1)[1].strip() for line in lines if "ERROR:" in line]
    return errors[-1] if errors else (lines[-1] if lines else type(exc).__name__)


def affine_from_lps(spacing, direction, origin) -> np.ndarray:
    """The RAS+ affine of a grid given in LPS+ (spacing (3,), direction (3, 3), origin (3,))."""
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS[:, None] * np.asarray(direction, float) * np.asarray(spacing, float)[None, :]
    affine[:3, 3] = LPS_TO_RAS * np.asarray(origin, float)
    return affine


def lps_from_affine(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing (3,), direction (3, 3), origin (3,)) in LPS+ of a RAS+ affine."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = voxel_spacing(affine)
    direction = LPS_TO_RAS[:, None] * affine[:3, :3] / spacing[None, :]
    return spacing, direction, LPS_TO_RAS * affine[:3, 3]


def from_sitk(image: sitk.Image, where, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(array (x, y, z[, channel]), RAS affine) of a SimpleITK image read from `where`."""
    dim, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if dim == 3:
        order = (2, 1, 0, 3) if components > 1 else (2, 1, 0)
    elif dim == 4 and components == 1:
        order = (3, 2, 1, 0)
    else:
        raise ImageReadError(f"{where}: a {dim}D image with {components} component(s) per voxel; "
                             f"expected 3D, with channels (if several) as vector components or "
                             f"along a 4th axis")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 4 and (np.any(direction[:3, 3]) or np.any(direction[3, :3])):
        raise ImageReadError(f"{where}: the 4th axis mixes with space in the direction matrix; "
                             f"expected channels along it")
    affine = affine_from_lps(image.GetSpacing()[:3], direction[:3, :3], image.GetOrigin()[:3])
    array = sitk.GetArrayFromImage(image).transpose(order)
    return (array if dtype is None else array.astype(dtype, copy=False)), affine


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of `array` ((x, y, z) or (x, y, z, channel)) on the grid of `affine`."""
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4):
        raise ValueError(f"expected an array (x, y, z) or (x, y, z, channel), got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    order = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(order)), isVector=array.ndim == 4)
    spacing, direction, origin = lps_from_affine(affine)
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin(origin.tolist())
    return image


def read_sitk(path: str | os.PathLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(array, RAS affine) of an NRRD or MetaImage file."""
    if not Path(path).is_file():
        raise ImageReadError(f"{path}: does not exist")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: cannot read image ({sitk_error(exc)})") from exc
    return from_sitk(image, path, dtype)


def sitk_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape `read_sitk` would return, from the header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: cannot read image header ({sitk_error(exc)})") from exc
    size, components = tuple(int(n) for n in reader.GetSize()), int(reader.GetNumberOfComponents())
    return size + ((components,) if components > 1 else ())


def write_sitk(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write an NRRD or MetaImage file (gzip-compressed voxels), atomically: a detached header
    (.mhd, .nhdr) and its data file are written under temporary names, the data file is moved
    into place first and the header last."""
    image = to_sitk(array, affine)
    path = Path(path)
    if path.name.lower().endswith(_DETACHED):
        with _staging_folder(path) as staging:
            sitk.WriteImage(image, str(staging / path.name), useCompression=True)
            for written in sorted(staging.iterdir(), key=lambda p: p.name == path.name):
                os.replace(written, path.parent / written.name)
        return
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


@contextlib.contextmanager
def _staging_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path`, removed afterwards with whatever is left in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
