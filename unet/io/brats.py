"""BraTS 2019/2020/2021 as the challenge distributes it, converted to the MSD layout.

The challenge ships one folder per patient (BraTS 2019 groups them under HGG/ and LGG/):

    {source}/.../{patient}/{patient}_flair.nii.gz  _t1  _t1ce  _t2  _seg  (.nii.gz or .nii)

Validation and test patients have no `_seg`. `ingest_brats` writes

    {dest}/imagesTr/{patient}.nii.gz   4D (X, Y, Z, 4), channels in CHANNELS order
    {dest}/labelsTr/{patient}.nii.gz   3D, the challenge's own label values 0, 1, 2, 4
    {dest}/imagesTs/{patient}.nii.gz   patients without a segmentation
    {dest}/dataset.json                modality, labels, regions, label_mapping, ingest (source)

Channels are FLAIR, T1, T1ce, T2: the order of MSD Task01_BrainTumour (FLAIR, T1w, T1gd, T2w),
so models and settings carry over between the two. Label files keep the values 0, 1, 2, 4; the
pipeline maps the declared values, sorted, to class indices 0..3 (plans.json's "labels") and
writes predictions back with the values, so predictions hold 0, 1, 2, 4 as well.

Before the conversion starts, every patient's files are checked from their headers (all present,
one of each, equal shapes and affines); while converting, the voxel data (readable, label values
0, 1, 2, 4 only). Errors name the folder and the file. The conversion goes into a staging folder
beside `dest`, renamed onto `dest` at the end, so an interrupted ingest never leaves a folder
that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np
from tqdm import tqdm

from unet.io.msd import DatasetError, write_dataset_json
from unet.io.nifti import save_nifti

# Channel name in dataset.json -> file suffix in the challenge's folders; the order is the
# channel order of the 4D images.
CHANNELS = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}
SEG_SUFFIX = "seg"
LABELS = {0: "background", 1: "necrotic / non-enhancing tumour core", 2: "peritumoral edema",
          4: "GD-enhancing tumour"}
# The challenge's evaluation regions, as sets of label values.
REGIONS = {"whole tumour": [1, 2, 4], "tumour core": [1, 4], "enhancing tumour": [4]}
_EXTENSIONS = (".nii.gz", ".nii")
_AFFINE_TOLERANCE = 1e-3  # as unet.preprocessing.loading: label and image affines must agree


class BratsError(DatasetError):
    """The BraTS source folder is not as the challenge distributes it; names folder and file."""


@dataclass(frozen=True)
class Patient:
    id: str
    folder: Path
    images: tuple[Path, ...]  # one per channel, in CHANNELS order
    seg: Path | None


def label_mapping() -> dict[int, int]:
    """Label value -> class index, as the pipeline assigns them (declared values, sorted)."""
    return {value: index for index, value in enumerate(sorted(LABELS))}


# --- finding the patients -----------------------------------------------------------------------

def _suffix_of(name: str) -> str | None:
    """'BraTS20_Training_001_t1ce.nii.gz' -> 't1ce'; None for a name that is not a NIfTI file."""
    lower = name.lower()
    for ext in _EXTENSIONS:
        if lower.endswith(ext):
            return lower[: -len(ext)].rpartition("_")[2]
    return None


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # macOS resource forks are `._x` files


def _patient(folder: Path, nifti_names: Iterable[str]) -> Patient:
    by_suffix: dict[str, list[str]] = {}
    for name in sorted(nifti_names):
        by_suffix.setdefault(_suffix_of(name), []).append(name)
    known = set(CHANNELS.values()) | {SEG_SUFFIX}
    for suffix, names in by_suffix.items():
        if suffix not in known:
            raise BratsError(
                f"{folder / names[0]}: not one of the BraTS files ({folder.name}_flair, _t1, "
                f"_t1ce, _t2, _seg .nii.gz); rename it (e.g. to {folder.name}_seg.nii.gz if it "
                f"is the segmentation) or move it out of {folder}")
        if len(names) > 1:
            raise BratsError(f"{folder}: several _{suffix} files ({', '.join(names)}); keep one")
    missing = [f"{folder.name}_{s}.nii.gz" for s in CHANNELS.values() if s not in by_suffix]
    if missing:
        raise BratsError(f"{folder}: missing {', '.join(missing)} (every patient needs the four "
                         f"modalities flair, t1, t1ce, t2)")
    images = tuple(folder / by_suffix[s][0] for s in CHANNELS.values())
    seg = folder / by_suffix[SEG_SUFFIX][0] if SEG_SUFFIX in by_suffix else None
    return Patient(id=folder.name, folder=folder, images=images, seg=seg)


def find_patients(source: str | os.PathLike) -> list[Patient]:
    """Every folder under `source` holding BraTS files is a patient; sorted by id (folder name)."""
    source = Path(source)
    if not source.is_dir():
        raise BratsError(f"{source}: no such folder (config ingest.source): point it at the "
                         f"unpacked BraTS training or validation data")
    patients: dict[str, Patient] = {}
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        niftis = [f for f in filenames if not _is_hidden(f) and _suffix_of(f) is not None]
        if not niftis:
            continue
        patient = _patient(Path(dirpath), niftis)
        if patient.id in patients:
            raise BratsError(f"{patient.folder} and {patients[patient.id].folder}: two patients "
                             f"named {patient.id}; case ids must be unique")
        patients[patient.id] = patient
    if not patients:
        raise BratsError(f"{source}: no patient folders with *_flair.nii.gz, *_t1.nii.gz, "
                         f"*_t1ce.nii.gz, *_t2.nii.gz found; point ingest.source at the unpacked "
                         f"BraTS data")
    return [patients[k] for k in sorted(patients)]


# --- checking and converting one patient --------------------------------------------------------

def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise BratsError(f"{path}: expected a 3D image, got shape {shape}")
    return tuple(int(n) for n in shape)


def _header(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    try:
        img = nib.load(str(path))  # reads the header only
    except Exception as exc:  # nibabel raises several types for broken files
        raise BratsError(f"{path}: cannot read NIfTI header ({exc})") from exc
    return _spatial_shape(path, img.shape), img.affine


def check_patient(patient: Patient) -> np.ndarray:
    """All files of a patient on one voxel grid (equal shapes and affines), from the headers.

    Returns the shared affine.
    """
    ref_path = patient.images[0]
    ref_shape, ref_affine = _header(ref_path)
    for path in patient.images[1:] + ((patient.seg,) if patient.seg is not None else ()):
        shape, affine = _header(path)
        if shape != ref_shape:
            raise BratsError(f"{path}: shape {shape} differs from {ref_path.name}'s {ref_shape}; "
                             f"all files of a patient must share one voxel grid")
        if not np.allclose(affine, ref_affine, atol=_AFFINE_TOLERANCE):
            raise BratsError(f"{path}: affine differs from {ref_path.name}'s; all files of a "
                             f"patient must share one voxel grid")
    return ref_affine


def _read(path: Path) -> np.ndarray:
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)  # stored type (BraTS: mostly int16)
    except Exception as exc:  # truncated or corrupt data
        raise BratsError(f"{path}: cannot read NIfTI image ({exc})") from exc
    return data.reshape(_spatial_shape(path, data.shape))


def _load_patient(patient: Patient) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(image (X, Y, Z, 4), label or None, affine) of a patient that passed check_patient."""
    affine = check_patient(patient)
    channels = [_read(path) for path in patient.images]
    dtypes = {c.dtype for c in channels}
    dtype = dtypes.pop() if len(dtypes) == 1 and np.issubdtype(channels[0].dtype, np.integer) \
        else np.float32  # keep a shared integer type (half the size of float32 on disk)
    image = np.stack([c.astype(dtype, copy=False) for c in channels], axis=-1)
    label = None
    if patient.seg is not None:
        seg = _read(patient.seg)
        if not np.array_equal(seg, np.rint(seg)):
            raise BratsError(f"{patient.seg}: label map holds non-integer values")
        unknown = sorted(set(np.unique(seg).astype(int).tolist()) - set(LABELS))
        if unknown:
            raise BratsError(f"{patient.seg}: label values {unknown} are not BraTS labels "
                             f"{sorted(LABELS)}")
        label = seg.astype(np.uint8)
    return image, label, affine


def convert_patient(patient: Patient, root: str | os.PathLike) -> bool:
    """Write one patient's MSD files under `root`; True if it has a segmentation (training)."""
    root = Path(root)
    image, label, affine = _load_patient(patient)
    if label is None:
        save_nifti(root / "imagesTs" / f"{patient.id}.nii.gz", image, affine)
        return False
    save_nifti(root / "imagesTr" / f"{patient.id}.nii.gz", image, affine)
    save_nifti(root / "labelsTr" / f"{patient.id}.nii.gz", label, affine, dtype=np.uint8)
    return True


def _convert(args: tuple[Patient, Path]) -> bool:
    return convert_patient(*args)


# --- the whole folder ---------------------------------------------------------------------------

def _dataset_json_extra(source: Path) -> dict:
    mapping = label_mapping()
    return {
        "regions": REGIONS,
        "label_mapping": {
            "value_to_class_index": {str(v): i for v, i in mapping.items()},
            "note": "Label files keep the BraTS values. The pipeline maps each declared value to "
                    "its class index (values sorted, as in plans.json 'labels') and writes "
                    "predictions back with the values, so they hold 0, 1, 2, 4 too.",
        },
        "ingest": {"format": "brats", "source": str(source)},
        "channel_files": {name: f"*_{suffix}.nii.gz" for name, suffix in CHANNELS.items()},
    }


def ingest_brats(source: str | os.PathLike, dest: str | os.PathLike, workers: int = 1,
                 progress: bool = True) -> Path:
    """Convert the BraTS folder `source` into an MSD dataset at `dest`; return `dest`.

    A `dest` written by an earlier ingest is replaced; any other non-empty `dest` is refused.
    """
    source, dest = Path(source).resolve(), Path(dest)
    if dest.exists() and any(dest.iterdir()) and ingested_from(dest) is None:
        raise BratsError(f"{dest} already exists and was not written by an ingest; move or "
                         f"delete it, or set `task` to another name for the converted dataset")
    patients = find_patients(source)
    for patient in tqdm(patients, desc="check BraTS", unit="patient", disable=not progress):
        check_patient(patient)  # headers only: grid errors surface before any conversion
    staging = dest.with_name(f".{dest.name}.ingesting")
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staging.mkdir(parents=True)
    try:
        jobs = [(p, staging) for p in patients]
        bar = dict(total=len(jobs), desc="ingest BraTS", unit="patient", disable=not progress)
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                has_seg = list(tqdm(pool.map(_convert, jobs), **bar))
        else:
            has_seg = [_convert(job) for job in tqdm(jobs, **bar)]
        training = [p.id for p, seg in zip(patients, has_seg) if seg]
        test = [p.id for p, seg in zip(patients, has_seg) if not seg]
        write_dataset_json(staging, dest.name, list(CHANNELS), LABELS, training, test,
                           extra=_dataset_json_extra(source))
        _swap_in(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{source} -> {dest}: {len(training)} patients with a segmentation (imagesTr), "
          f"{len(test)} without (imagesTs)")
    return dest


def _swap_in(staging: Path, dest: Path) -> None:
    """Rename `staging` onto `dest`; a previous `dest` is moved aside first, then deleted."""
    old = dest.with_name(f".{dest.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def ingested_from(root: str | os.PathLike) -> dict | None:
    """The "ingest" record of the dataset.json under `root` ({"format", "source"}), if any."""
    try:
        return json.loads((Path(root) / "dataset.json").read_text()).get("ingest")
    except (OSError, ValueError, AttributeError):
        return None
