"""Making the raw dataset available, then checking it: the demo generated, an MSD task downloaded,
a challenge folder converted (ingest), or a user's own MSD-layout folder taken as it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from unet.io.msd import Dataset, DatasetError, load_dataset

INGEST_FORMATS = ("brats",)
_SHOWN_PROBLEMS = 20


def is_msd_task(task: str) -> bool:
    from unet.io.download import known_tasks

    return task in known_tasks()


def prepare_dataset(task: str, data_dir: str | Path, demo: dict | None = None,
                    ingest: dict | None = None, workers: int = 1) -> Dataset:
    """Return the dataset for `task` under `data_dir` (= {data_dir}/{task}), creating it if needed.

    `ingest` = {"format": "brats", "source": PATH} converts `source` into `data_dir` instead
    (config `ingest:`); it takes precedence over an MSD task of the same name.
    """
    data_dir = Path(data_dir)
    if ingest is not None:
        if task == "demo":
            raise DatasetError("config `ingest` is set, but `task` is demo: set `task` to the "
                               "folder name the converted dataset should get (e.g. BraTS2021)")
        ingest_dataset(ingest, data_dir, workers=workers)
    elif task == "demo":
        from unet.demo import generate_demo

        # Generate beside the target, then swap, so a half-written demo never looks finished.
        staging = data_dir.with_name(f".{data_dir.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        generate_demo(staging, **(demo or {}))
        shutil.rmtree(data_dir, ignore_errors=True)
        staging.rename(data_dir)
    elif is_msd_task(task):
        from unet.io.download import download_msd_task

        download_msd_task(task, data_dir.parent)
    else:
        check_folder(data_dir, task)
    dataset = load_dataset(data_dir)
    check_files(dataset)
    check_headers(dataset)
    return dataset


def ingest_dataset(ingest: dict, data_dir: Path, workers: int = 1) -> None:
    """Convert `ingest["source"]` into `data_dir`, unless a complete conversion of it is there."""
    from unet.io.brats import ingest_brats, ingested_from

    fmt = ingest.get("format")
    if fmt not in INGEST_FORMATS:
        raise DatasetError(f"config ingest.format: {fmt!r} is not supported; supported: "
                           f"{', '.join(INGEST_FORMATS)}")
    source = Path(ingest["source"]).resolve()
    if ingested_from(data_dir) == {"format": fmt, "source": str(source)}:
        try:
            check_files(load_dataset(data_dir))
        except DatasetError as exc:
            print(f"{data_dir}: converted from {source} before, but now incomplete; converting "
                  f"again. ({exc})")
        else:
            print(f"{data_dir}: already converted from {source}; delete it to convert again")
            return
    ingest_brats(source, data_dir, workers=workers)


def check_folder(data_dir: Path, task: str) -> None:
    """A user's own dataset: the folder and its dataset.json must exist."""
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such folder. config `task: {task}` is neither `demo`, "
                           f"an MSD task name, nor a folder under data_dir in MSD layout")
    meta = data_dir / "dataset.json"
    if not meta.is_file():
        hint = ""
        if any(data_dir.glob("*/*_flair.nii*")) or any(data_dir.glob("*/*/*_flair.nii*")):
            hint = (f" This looks like a BraTS challenge folder: convert it with `ingest: "
                    f"{{format: brats, source: {data_dir}}}` and a new `task` name.")
        raise DatasetError(
            f"{meta}: missing. A dataset folder in MSD layout needs a dataset.json naming the "
            f"channels ('modality'), the labels ('labels', with 0 for background) and the "
            f"training cases ('training': image and label paths); see the README, 'Running on "
            f"your data'.{hint}")


def check_files(dataset: Dataset) -> None:
    """Every file dataset.json lists must exist; one error lists all that do not."""
    missing = [str(p) for c in dataset.training + dataset.test for p in (c.image, c.label)
               if p is not None and not p.is_file()]
    if missing:
        raise DatasetError(f"{dataset.root / 'dataset.json'} lists {len(missing)} file(s) that do "
                           f"not exist:\n  {_shown(missing)}")


def check_headers(dataset: Dataset) -> None:
    """From the NIfTI headers (no voxel data read): channels as declared, labels on the image grid.

    One error lists every problem found, so a user fixes them in one go.
    """
    n_channels = len(dataset.modalities)
    problems = []
    for case in dataset.training + dataset.test:
        try:
            image = nib.load(str(case.image))
            label = nib.load(str(case.label)) if case.label is not None else None
        except Exception as exc:  # nibabel raises several types for broken files
            problems.append(f"{case.id}: cannot read its NIfTI header ({exc})")
            continue
        shape = image.shape
        channels = 1 if len(shape) == 3 else shape[3] if len(shape) == 4 else None
        if channels is None:
            problems.append(f"{case.image}: shape {shape}, expected (x, y, z) or "
                            f"(x, y, z, channel)")
            continue
        if channels != n_channels:
            problems.append(f"{case.image}: {channels} channel(s), dataset.json 'modality' "
                            f"declares {n_channels} ({', '.join(dataset.modalities)})")
        if label is None:
            continue
        label_shape = label.shape[:3] if label.shape[3:] in ((), (1,)) else label.shape
        if label_shape != shape[:3]:
            problems.append(f"{case.label}: shape {label.shape} does not match its image's "
                            f"{shape[:3]}")
        elif not np.allclose(label.affine, image.affine, atol=1e-3):
            problems.append(f"{case.label}: affine differs from its image's ({case.image.name})")
    if problems:
        raise DatasetError(f"{dataset.root / 'dataset.json'}: {len(problems)} problem(s) with the "
                           f"files it lists:\n  {_shown(problems)}")


def _shown(lines: list[str]) -> str:
    more = len(lines) - _SHOWN_PROBLEMS
    return "\n  ".join(lines[:_SHOWN_PROBLEMS]) + (f"\n  ... and {more} more" if more > 0 else "")
