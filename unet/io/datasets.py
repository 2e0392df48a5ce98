"""Making the raw dataset available, then checking it: the demo generated, an MSD task downloaded,
a challenge folder converted (ingest), or a user's own MSD-layout folder taken as it is.

The workflow splits this in two: `fetch_dataset` is all that needs the network (the `download`
rule, run where Snakemake runs), `prepare_dataset` the rest (the `validate` rule, a scheduled job).
`known_case_ids` tells the workflow the case list before either has run, whenever it can. The
rules' jobs are `download_dataset`, `write_case_list` and `write_dataset_ok`, run inside
`dataset_job_log`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from unet.io.atomic import write_json
from unet.io.download import DownloadError, download_msd_task, known_tasks
from unet.io.logs import output_to
from unet.io.msd import Dataset, DatasetError, load_dataset
from unet.io.validation import shown, validate_dataset

INGEST_FORMATS = ("brats",)


def is_msd_task(task: str) -> bool:
    return task in known_tasks()


def dataset_source(task: str, ingest: dict | None = None) -> str:
    """Where the raw dataset of `task` comes from: "ingest" (config `ingest`, which takes precedence
    over an MSD task of the same name), "demo", "msd" (downloaded) or "folder" (the user's own)."""
    if ingest is not None:
        if task == "demo":
            raise DatasetError("config `ingest` is set, but `task` is demo: set `task` to the "
                               "folder name the converted dataset should get (e.g. BraTS2021)")
        return "ingest"
    if task == "demo":
        return "demo"
    return "msd" if is_msd_task(task) else "folder"


def fetch_dataset(task: str, data_dir: str | Path, ingest: dict | None = None) -> str:
    """The part of `prepare_dataset` that may need the network: download and extract an MSD task
    (nothing when its folder is complete), or check that a user's folder has a dataset.json. The
    demo and an ingest need nothing here. Returns `dataset_source(task, ingest)`."""
    data_dir = Path(data_dir)
    source = dataset_source(task, ingest)
    if source == "msd":
        download_msd_task(task, data_dir.parent)
    elif source == "folder":
        check_folder(data_dir, task)
    return source


def prepare_dataset(task: str, data_dir: str | Path, demo: dict | None = None,
                    ingest: dict | None = None, workers: int = 1) -> Dataset:
    """Return the dataset for `task` under `data_dir` (= {data_dir}/{task}), creating it if needed,
    after checking every file it lists (`unet.io.validation`; `workers` processes read them).

    `ingest` = {"format": "brats", "source": PATH} converts `source` into `data_dir` instead
    (config `ingest:`); it takes precedence over an MSD task of the same name.
    """
    data_dir = Path(data_dir)
    source = fetch_dataset(task, data_dir, ingest)
    if source == "ingest":
        ingest_dataset(ingest, data_dir, workers=workers)
    elif source == "demo":
        from unet.io.demo import generate_demo

        # Generate beside the target, then swap, so a half-written demo never looks finished.
        staging = data_dir.with_name(f".{data_dir.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        generate_demo(staging, **(demo or {}))
        shutil.rmtree(data_dir, ignore_errors=True)
        staging.rename(data_dir)
    dataset = load_dataset(data_dir)
    validate_dataset(dataset, workers=workers)
    return dataset


def known_case_ids(task: str, data_dir: str | Path, demo: dict | None = None,
                   ingest: dict | None = None) -> tuple[list[str], list[str]] | None:
    """(training ids, test ids), sorted, as `prepare_dataset` will list them, if they can be known
    before anything is downloaded or converted: from the demo's settings, a BraTS folder to
    convert (file names only), or a dataset.json on disk. None for an MSD task not downloaded yet
    or a folder without dataset.json."""
    data_dir = Path(data_dir)
    source = dataset_source(task, ingest)
    if source == "demo":
        from unet.io.demo import case_ids

        return case_ids(**{k: v for k, v in (demo or {}).items() if k in ("n_train", "n_test")})
    if source == "ingest":
        from unet.io.brats import find_patients, ingested_from

        record = _ingest_record(ingest)
        if ingested_from(data_dir) != record:
            patients = find_patients(record["source"])
            return ([p.id for p in patients if p.seg is not None],
                    [p.id for p in patients if p.seg is None])
    if not (data_dir / "dataset.json").is_file():
        return None
    dataset = load_dataset(data_dir)
    return [c.id for c in dataset.training], [c.id for c in dataset.test]


def _ingest_record(ingest: dict) -> dict:
    """{"format", "source" (resolved)}, as an ingest records it in dataset.json."""
    fmt = ingest.get("format")
    if fmt not in INGEST_FORMATS:
        raise DatasetError(f"config ingest.format: {fmt!r} is not supported; supported: "
                           f"{', '.join(INGEST_FORMATS)}")
    return {"format": fmt, "source": str(Path(ingest["source"]).resolve())}


def ingest_dataset(ingest: dict, data_dir: Path, workers: int = 1) -> None:
    """Convert `ingest["source"]` into `data_dir`, unless a complete conversion of it is there."""
    from unet.io.brats import ingest_brats, ingested_from

    record = _ingest_record(ingest)
    source = Path(record["source"])
    if ingested_from(data_dir) == record:
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
    """Every file dataset.json lists must exist; one error lists all that do not. (Cheap: no
    file is opened; `validate_dataset` does the full check.)"""
    missing = [str(p) for c in dataset.training + dataset.test for p in (c.image, c.label)
               if p is not None and not p.is_file()]
    if missing:
        raise DatasetError(f"{dataset.root / 'dataset.json'} lists {len(missing)} file(s) that do "
                           f"not exist:\n  {shown(missing)}")


@contextlib.contextmanager
def dataset_job_log(path: str | os.PathLike) -> Iterator[None]:
    """`output_to(path)`, where a DatasetError or DownloadError ends the job with its one-line
    message and exit status 1: a problem with the data, not a bug; the message (Snakemake shows
    the log) says what to fix, and a traceback would only bury it. Other errors keep theirs."""
    with output_to(path):
        try:
            yield
        except (DatasetError, DownloadError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(1)


def download_dataset(task: str, data_dir: str | os.PathLike, out: str | os.PathLike,
                     ingest: dict | None = None) -> str:
    """Rule `download`: `fetch_dataset`, then record the task, its folder and where it comes from
    in `out` (download.json). Returns the source."""
    source = fetch_dataset(task, data_dir, ingest)
    write_json(out, {"task": task, "path": str(data_dir), "source": source})
    print(f"{data_dir}: source {source}")
    return source


def write_case_list(data_dir: str | os.PathLike, out: str | os.PathLike) -> None:
    """Checkpoint `case_list`: the training and test case ids of the dataset in `data_dir`, to
    `out` (cases.json)."""
    dataset = load_dataset(data_dir)
    write_json(out, {"training": [c.id for c in dataset.training], "test": [c.id for c in dataset.test]})


def write_dataset_ok(task: str, data_dir: str | os.PathLike, out: str | os.PathLike,
                     demo: dict | None = None, ingest: dict | None = None, workers: int = 1) -> Dataset:
    """Rule `validate`: `prepare_dataset` (the download, if any, is done: here it only finds the
    folder complete), then record what the checked dataset holds in `out` (dataset.ok)."""
    dataset = prepare_dataset(task, data_dir, demo, ingest, workers=workers)
    write_json(out, {
        "task": task, "path": str(dataset.root), "modalities": list(dataset.modalities),
        "labels": {str(k): v for k, v in dataset.labels.items()},
        # Read by train/predict for `train.regions: dataset` (unet.inference.regions).
        "regions": {name: list(values) for name, values in dataset.regions.items()},
        # Read by predict: the fold's predictions are written in the dataset's format.
        "file_ending": dataset.file_ending,
        "training_cases": len(dataset.training), "test_cases": len(dataset.test),
        **({"ingest": dict(ingest)} if ingest else {}),
    })
    print(f"{dataset.root}: {len(dataset.training)} training and {len(dataset.test)} test cases")
    return dataset
