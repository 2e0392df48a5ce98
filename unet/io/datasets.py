"""Making the raw dataset available: the demo generated, an MSD task downloaded, or a folder checked."""

from __future__ import annotations

import shutil
from pathlib import Path

from unet.io.msd import Dataset, DatasetError, load_dataset


def is_msd_task(task: str) -> bool:
    from unet.io.download import known_tasks

    return task in known_tasks()


def prepare_dataset(task: str, data_dir: str | Path, demo: dict | None = None) -> Dataset:
    """Return the dataset for `task` under `data_dir` (= {data_dir}/{task}), creating it if needed."""
    data_dir = Path(data_dir)
    if task == "demo":
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
    elif not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such folder. config `task: {task}` is neither `demo`, an MSD "
                           f"task name, nor a folder under data_dir in MSD layout")
    dataset = load_dataset(data_dir)
    check_files(dataset)
    return dataset


def check_files(dataset: Dataset) -> None:
    """Every file dataset.json lists must exist; one error lists all that do not."""
    missing = [str(p) for c in dataset.training + dataset.test for p in (c.image, c.label)
               if p is not None and not p.is_file()]
    if missing:
        shown = "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
        raise DatasetError(f"{dataset.root / 'dataset.json'} lists {len(missing)} file(s) that do not "
                           f"exist:\n  {shown}")
