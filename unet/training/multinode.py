"""One training worker: the job it trains, its rank among the workers, and where it writes.

A fold's training runs in one process or in several workers (one per node, or Horovod's one per
GPU), which `unet.training.launch` starts. A `TrainJob` describes the fold; workers in other
processes read it from a JSON job file, started as `python -m unet.training.multinode JOB` (the
package's module, so any Python with `unet` installed can be a worker, .venv-horovod's included).
TensorFlow needs every worker to write checkpoints and the model; worker 0 writes the fold's
real outputs, the others write to a scratch folder that is removed afterwards (`worker_outputs`).
TensorFlow is imported only by `train_worker`, so reading a job costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from unet.config import EXECUTION_SETTINGS
from unet.data.splits import Fold, load_fold
from unet.inference.model_info import CHECKPOINTS, write_model_info
from unet.inference.regions import regions_from_setting
from unet.io.atomic import read_json, write_json
from unet.preprocessing.plan import FULLRES
from unet.training.settings import TrainSettings


@dataclass(frozen=True)
class TrainJob:
    """One fold's training: its data, its outputs and its settings. As JSON (`save`, `load`):
    {plans, shards, train, val, out_dir, model, curves, settings, configuration}, settings as
    config `train`; `configuration` is the plans.json configuration trained (2d: a 2D network on
    slices of the same shards)."""

    plans: str
    shards: str
    train: tuple[str, ...]     # case ids
    val: tuple[str, ...]
    out_dir: str               # checkpoints and training_log.jsonl
    model: str
    curves: str | None
    settings: TrainSettings
    configuration: str = FULLRES

    @classmethod
    def for_fold(cls, splits: str | os.PathLike, fold: Fold, *, plans: str | os.PathLike,
                 shards: str | os.PathLike, model: str | os.PathLike, curves: str | os.PathLike | None,
                 config: dict, dataset_ok: str | os.PathLike, configuration: str = FULLRES) -> "TrainJob":
        """Fold `fold` of the `splits` file (`all`: every case, none validated), trained with config
        `train` (`config`) on `plans`' `configuration`, written beside `model`. `regions: dataset` is
        resolved here from what the download stage found (`dataset_ok`), so that every worker trains
        on the same explicit regions."""
        split = load_fold(splits, fold)
        regions = regions_from_setting(config.get("regions"), dataset_ok)
        return cls(plans=str(plans), shards=str(shards), train=tuple(split["train"]), val=tuple(split["val"]),
                   out_dir=str(Path(model).parent), model=str(model), curves=str(curves) if curves else None,
                   settings=TrainSettings.from_config({**config, "regions": regions}), configuration=configuration)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the job file (atomically: a worker never reads half of it); returns `path`."""
        write_json(path, asdict(self))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainJob":
        job = read_json(path)
        return cls(plans=job["plans"], shards=job["shards"], train=tuple(job["train"]), val=tuple(job["val"]),
                   out_dir=job["out_dir"], model=job["model"], curves=job.get("curves"),
                   settings=TrainSettings.from_config(job["settings"]),
                   configuration=job.get("configuration", FULLRES))


def worker_rank() -> int:
    """This process's rank: Horovod's (horovodrun sets HOROVOD_RANK) or the srun task's."""
    return int(os.environ.get("HOROVOD_RANK", os.environ.get("SLURM_PROCID", "0")))


@contextlib.contextmanager
def worker_outputs(out_dir: str | os.PathLike, model_path: str | os.PathLike, curves_path: str | os.PathLike | None,
                   rank: int, resume: bool = False) -> Iterator[tuple[Path, Path, Path | None]]:
    """(out_dir, model_path, curves_path) for worker `rank`: the real ones for worker 0, else
    paths in a scratch folder (seeded with the fold's checkpoints when resuming) removed after."""
    if rank == 0:
        yield Path(out_dir), Path(model_path), Path(curves_path) if curves_path else None
        return
    with tempfile.TemporaryDirectory(prefix=f"unet-train-worker{rank}-") as scratch:
        scratch = Path(scratch)
        if resume and (Path(out_dir) / "checkpoints").is_dir():
            shutil.copytree(Path(out_dir) / "checkpoints", scratch / "checkpoints")
            if (Path(out_dir) / "training_log.jsonl").is_file():
                shutil.copy(Path(out_dir) / "training_log.jsonl", scratch / "training_log.jsonl")
        yield scratch, scratch / Path(model_path).name, None


def trained_settings(settings: TrainSettings) -> dict:
    """The settings recorded with the model (model.json): those that change the result."""
    skip = {*EXECUTION_SETTINGS["train"], "input_memory_mb"}
    return {key: value for key, value in asdict(settings).items() if key not in skip}


def train_worker(job: TrainJob, rank: int = 0) -> None:
    """Train `job` as worker `rank` (0: the only worker, or the one that writes the fold): the
    final and best models, then the model.json that describes them (unet.inference.model_info)."""
    from unet.preprocessing.plan import Plan
    from unet.training.loop import train_fold

    with worker_outputs(job.out_dir, job.model, job.curves, rank, job.settings.resume) as (out_dir, model, curves):
        plan = Plan.load(job.plans, job.configuration)
        rows = train_fold(plan, job.settings, job.shards, job.train, job.val, out_dir=out_dir,
                          model_path=model, curves_path=curves,
                          best_model_path=Path(model).with_name(CHECKPOINTS["best"]))
        write_model_info(Path(model).parent, plans=job.plans, regions=job.settings.regions, rows=rows,
                         train=trained_settings(job.settings), configuration=plan.configuration)


def main(argv: Sequence[str]) -> None:
    """`python -m unet.training.multinode JOB`: one worker (rank from srun or horovodrun) of JOB.
    Threads and GPUs come with the environment the launching process set up and passed on."""
    train_worker(TrainJob.load(argv[0]), worker_rank())


if __name__ == "__main__":
    main(sys.argv[1:])
