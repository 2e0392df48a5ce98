"""Checking a raw MSD-layout dataset once, before any work, and naming every problem in one error.

`load_dataset` has already checked dataset.json itself; here its "ignore" label, if any, must be
the highest value (nnU-Net v2's sparse annotation), and every file it lists is read once, in
parallel over cases: missing or unreadable image files (any format of `unet.io.images`), images whose channels differ from
dataset.json's 'modality', labels off their image's grid, NaN or infinite image voxels, label
values that are not whole numbers or not declared in 'labels'. Each check is a function that
returns a list of problem strings (each naming its file), so they compose and test alone;
`validate_dataset` gathers them and raises one `DatasetError`.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from tqdm import tqdm

from unet.io.labels import ignore_problems
from unet.io.msd import Case, Dataset, DatasetError
from unet.io.images import ImageReadError, read_image, voxel_spacing

# Largest difference (mm, per affine entry) between a label's affine and its image's that is
# still the same grid: NIfTI stores the sform as float32, and tools round it differently.
AFFINE_TOLERANCE = 1e-3
SHOWN_PROBLEMS = 20
_SHOWN_VALUES = 10


@dataclass(frozen=True)
class Expected:
    """What every case must agree with, from dataset.json."""

    modalities: tuple[str, ...]
    label_values: tuple[int, ...]
    affine_tolerance: float = AFFINE_TOLERANCE

    @classmethod
    def of(cls, dataset: Dataset) -> Expected:
        return cls(dataset.modalities, dataset.label_values)


def validate_dataset(dataset: Dataset, workers: int = 1, progress: bool = True) -> None:
    """Raise one `DatasetError` listing every problem of `dataset`, or return if there is none."""
    problems = dataset_problems(dataset, workers=workers, progress=progress)
    if problems:
        raise DatasetError(f"{dataset.root / 'dataset.json'}: {len(problems)} problem(s) with the "
                           f"dataset:\n  {shown(problems)}")


def dataset_problems(dataset: Dataset, workers: int = 1, progress: bool = True) -> list[str]:
    """All problems of `dataset`: dataset.json's counts and ids, then each case's files."""
    cases = dataset.training + dataset.test
    check = partial(case_problems, expected=Expected.of(dataset))
    bar = {"total": len(cases), "desc": "validate", "unit": "case", "disable": not progress}
    if workers > 1 and len(cases) > 1:
        # Processes, as fingerprinting does: threads were no faster on 2 cores (reading is
        # nibabel's chunked gzip decompression, part of it under the GIL); only short problem
        # strings come back.
        with ProcessPoolExecutor(max_workers=min(workers, len(cases))) as pool:
            per_case = list(tqdm(pool.map(check, cases), **bar))
    else:
        per_case = [check(case) for case in tqdm(cases, **bar)]
    return metadata_problems(dataset) + [p for problems in per_case for p in problems]


def metadata_problems(dataset: Dataset) -> list[str]:
    """dataset.json's 'numTraining'/'numTest' against its lists; a case id listed twice; an
    ignore label that is not the highest value (`unet.io.labels`)."""
    meta_path = dataset.root / "dataset.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    problems = [f"{meta_path}: {p}" for p in ignore_problems(dataset.labels, dataset.regions)]
    for key, cases in (("numTraining", dataset.training), ("numTest", dataset.test)):
        if key in meta and meta[key] != len(cases):
            listed = "training" if key == "numTraining" else "test"
            problems.append(f"{meta_path}: {key!r} is {meta[key]!r}, but {len(cases)} case(s) are "
                            f"listed under {listed!r}")
    counts = Counter(c.id for c in dataset.training + dataset.test)
    for cid, n in sorted(counts.items()):
        if n > 1:
            problems.append(f"{meta_path}: case id {cid!r} is listed {n} times; each case's "
                            f"files must have a name of their own")
    return problems


def case_problems(case: Case, expected: Expected) -> list[str]:
    """Every problem of one case's image and label; each file is read once."""
    image, problems = _read(case.image)
    label, label_problems_ = _read(case.label) if case.label is not None else (None, [])
    problems += label_problems_
    if image is not None:
        problems += image_problems(case.image, image[0], image[1], expected)
    if label is not None:
        problems += label_problems(case.label, label[0], expected)
    if image is not None and label is not None:
        problems += grid_problems(case.label, label[0].shape, label[1], case.image,
                                  image[0].shape, image[1], expected.affine_tolerance)
    return problems


def _read(path) -> tuple[tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """((voxels, affine), []) or (None, [problem]): a missing, unreadable or truncated file."""
    if not path.is_file():
        return None, [f"{path}: listed in dataset.json but does not exist"]
    try:
        return read_image(path), []  # reads all voxels: a truncated file fails here
    except ImageReadError as exc:
        return None, [str(exc)]


def image_problems(path, data: np.ndarray, affine: np.ndarray, expected: Expected) -> list[str]:
    """Shape (X, Y, Z) or (X, Y, Z, C) with C = the declared channels; a usable affine; finite
    voxels."""
    problems = _affine_problems(path, affine)
    if data.ndim not in (3, 4):
        return problems + [f"{path}: shape {data.shape}, expected (x, y, z) or (x, y, z, channel)"]
    channels = 1 if data.ndim == 3 else data.shape[3]
    n_declared = len(expected.modalities)
    if channels != n_declared:
        problems.append(f"{path}: {channels} channel(s), dataset.json 'modality' declares "
                        f"{n_declared} ({', '.join(expected.modalities)})")
    # Integer voxels are always finite.
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        data4 = data if data.ndim == 4 else data[..., None]
        for c in range(channels):
            nan, inf = int(np.isnan(data4[..., c]).sum()), int(np.isinf(data4[..., c]).sum())
            if nan or inf:
                name = f" ({expected.modalities[c]})" if c < n_declared else ""
                problems.append(f"{path}: channel {c}{name} has {nan} NaN and {inf} infinite "
                                f"voxel(s)")
    return problems


def label_problems(path, data: np.ndarray, expected: Expected) -> list[str]:
    """Shape (X, Y, Z); whole-number values, each declared in dataset.json 'labels'."""
    if not (data.ndim == 3 or (data.ndim == 4 and data.shape[3] == 1)):
        return [f"{path}: shape {data.shape}, expected a 3D label map (x, y, z)"]
    if np.issubdtype(data.dtype, np.floating):
        rounded = np.rint(data)
        fractional = ~(rounded == data)  # NaN is never equal to itself, so it counts too
        if fractional.any():
            example = data[fractional].flat[0]
            return [f"{path}: {int(fractional.sum())} voxel(s) hold values that are not whole "
                    f"numbers (e.g. {example:g}); label maps hold integer label values"]
        data = rounded.astype(np.int64)
    elif not np.issubdtype(data.dtype, np.integer):
        return [f"{path}: voxel type {data.dtype}, expected integer label values"]
    values, counts = np.unique(data, return_counts=True)
    unknown = [(int(v), int(n)) for v, n in zip(values, counts)
               if int(v) not in expected.label_values]
    if not unknown:
        return []
    listed = ", ".join(f"{v} ({n} voxels)" for v, n in unknown[:_SHOWN_VALUES])
    more = f" and {len(unknown) - _SHOWN_VALUES} more" if len(unknown) > _SHOWN_VALUES else ""
    return [f"{path}: label value(s) {listed}{more} not declared in dataset.json 'labels' "
            f"(declared: {', '.join(map(str, expected.label_values))})"]


def grid_problems(label_path, label_shape: tuple[int, ...], label_affine: np.ndarray, image_path,
                  image_shape: tuple[int, ...], image_affine: np.ndarray,
                  tolerance: float = AFFINE_TOLERANCE) -> list[str]:
    """A label must lie on its image's voxel grid: same (X, Y, Z) shape, affine within
    `tolerance`."""
    if tuple(label_shape[:3]) != tuple(image_shape[:3]):
        return [f"{label_path}: shape {tuple(label_shape)} does not match its image's "
                f"{tuple(image_shape[:3])} ({image_path.name})"]
    difference = float(np.abs(np.asarray(label_affine) - np.asarray(image_affine)).max())
    if not difference <= tolerance:  # also catches NaN
        return [f"{label_path}: affine differs from its image's ({image_path.name}) by up to "
                f"{difference:.3g} (tolerance {tolerance:g})"]
    return []


def _affine_problems(path, affine: np.ndarray) -> list[str]:
    if not np.isfinite(affine).all():
        return [f"{path}: affine holds NaN or infinite values"]
    if np.any(voxel_spacing(affine) == 0):
        return [f"{path}: affine gives a voxel size of 0 ({voxel_spacing(affine).tolist()})"]
    return []


def shown(lines: list[str]) -> str:
    """The first SHOWN_PROBLEMS lines, then how many more there are."""
    more = len(lines) - SHOWN_PROBLEMS
    return "\n  ".join(lines[:SHOWN_PROBLEMS]) + (f"\n  ... and {more} more" if more > 0 else "")
