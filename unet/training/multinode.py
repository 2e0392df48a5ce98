"""Training on several nodes under SLURM: one process per node, started with `srun`.

With `train.nodes` > 1 the train rule asks SLURM for that many nodes and one task per node
(rules/common.smk, `train_resources`). The rule's script then runs first in the job's batch
step, where `launch_workers` starts it again on every node and waits; each of those copies
(`is_worker`) trains as one worker of a MultiWorkerMirroredStrategy (unet.training.strategy).
TensorFlow needs every worker to write checkpoints and the model; worker 0 writes the fold's
real outputs, the others write to a scratch folder that is removed afterwards (`worker_outputs`).
No TensorFlow here: the batch step only waits.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

WORKER_FLAG = "--unet-train-worker"


def is_worker(argv: Sequence[str]) -> bool:
    """Whether this process is one of the per-node copies `launch_workers` started."""
    return WORKER_FLAG in argv


def worker_rank() -> int:
    """This process's rank: Horovod's (horovodrun sets HOROVOD_RANK) or the srun task's."""
    return int(os.environ.get("HOROVOD_RANK", os.environ.get("SLURM_PROCID", "0")))


def srun_command(script: str, nodes: int, gpus: int, cpus: int, launcher: str = "srun") -> list[str]:
    """`launcher` (the rule's `mpi` resource, e.g. `srun` or `srun --mpi=pmix`) running `script`
    as one task per node, each with `cpus` CPUs and `gpus` GPUs; output lines labelled by task."""
    cmd = [*shlex.split(launcher), f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
           f"--cpus-per-task={max(1, cpus)}", "--kill-on-bad-exit=1", "--label"]
    if gpus > 0:
        cmd.append(f"--gpus-per-task={gpus}")
    return [*cmd, sys.executable, script, WORKER_FLAG]


def launch_workers(script: str, nodes: int, gpus: int, cpus: int, launcher: str = "srun") -> None:
    """Run `script` on `nodes` nodes of the current SLURM job and wait; raise if a task fails."""
    if "SLURM_JOB_ID" not in os.environ or shutil.which(shlex.split(launcher)[0]) is None:
        raise RuntimeError(f"config train.nodes={nodes}: training on several nodes runs inside a SLURM job; "
                           "run Snakemake with --workflow-profile profiles/slurm, or set train.nodes: 1")
    cmd = srun_command(script, nodes, gpus, cpus, launcher)
    print("starting one training process per node:", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


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


# -- Horovod ---------------------------------------------------------------------------------------
# train.distribution: horovod. Horovod lives in its own environment (.venv-horovod, TensorFlow 2.15,
# no Snakemake: `make horovod-env`), so the workers do not rerun the rule's script: the script writes
# the fold's arguments to a JSON job file and starts `python -m unet.training.multinode JOB` in that
# environment, one process per GPU: with srun (one task per GPU) inside a SLURM job, else horovodrun.

def find_horovod():
    """Horovod's module spec in this Python, or None (without importing TensorFlow)."""
    import importlib.util

    return importlib.util.find_spec("horovod")


def horovod_python(repo: str | os.PathLike = ".") -> str:
    """A Python that can import Horovod: this one, else `repo`/.venv-horovod's."""
    if find_horovod() is not None:
        return sys.executable
    venv = Path(repo) / ".venv-horovod" / "bin" / "python"
    if venv.is_file():
        return str(venv.absolute())
    raise RuntimeError("config train.distribution: horovod needs Horovod, which neither this Python nor "
                       f"{venv} has: run `make horovod-env` (pins in envs/horovod.txt), or set "
                       "train.distribution: auto")


def horovod_command(job: str | os.PathLike, python: str, gpus: int, nodes: int,
                    launcher: str = "srun", in_slurm: bool = False) -> list[str]:
    """The command that trains `job` with one Horovod process per GPU (at least one per node)."""
    per_node = max(1, gpus)
    worker = [python, "-m", "unet.training.multinode", str(job)]
    if in_slurm:
        cmd = [*shlex.split(launcher), f"--nodes={nodes}", f"--ntasks={per_node * nodes}",
               f"--ntasks-per-node={per_node}", "--kill-on-bad-exit=1", "--label"]
        return [*cmd, *(["--gpus-per-task=1"] if gpus > 0 else []), *worker]
    horovodrun = str(Path(python).parent / "horovodrun")
    return [horovodrun, "-np", str(per_node), "-H", f"localhost:{per_node}", "--gloo", *worker]


def main(argv: Sequence[str]) -> None:
    """`python -m unet.training.multinode JOB`: one Horovod worker training the fold in JOB, a JSON
    file of {plans, shards, train, val, out_dir, model, curves, settings}."""
    import json

    from unet.preprocessing.plan import Plan
    from unet.training.loop import train_fold
    from unet.training.settings import TrainSettings

    job = json.loads(Path(argv[0]).read_text())
    settings = TrainSettings.from_config(job["settings"])
    with worker_outputs(job["out_dir"], job["model"], job["curves"], worker_rank(), settings.resume) as paths:
        train_fold(Plan.load(job["plans"]), settings, job["shards"], job["train"], job["val"],
                   out_dir=paths[0], model_path=paths[1], curves_path=paths[2])


if __name__ == "__main__":
    main(sys.argv[1:])
