"""Starting a fold's training (rule `train`): in this process, one worker per node, or Horovod's.

`launch` chooses by the job's settings (`launch_mode`):

- process (`train.nodes: 1`): trains here, on the GPUs this job takes (unet.runtime.assign_gpus);
- nodes (`train.nodes` > 1, SLURM): the job asked SLURM for that many nodes and one task per node
  (rules/common.smk, `train_resources`). This process, the job's batch step, starts one worker per
  node with srun and waits; each is one worker of a MultiWorkerMirroredStrategy
  (unet.training.strategy);
- horovod (`train.distribution: horovod`): Horovod lives in its own environment (.venv-horovod,
  TensorFlow 2.15, no Snakemake: `make horovod-env`); one worker per GPU in that environment, with
  srun (one task per GPU) inside a SLURM job, else with horovodrun.

Workers in other processes run `python -m unet.training.multinode JOB`, where JOB is the job file
written in the fold's folder (seen by every node), and inherit this process's environment: the
threads `configure_tensorflow` set and the GPUs. No TensorFlow here: the batch step only waits.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow
from unet.training.multinode import TrainJob, train_worker
from unet.training.settings import TrainSettings

JOB_FILE = "train_job.json"
WORKER_MODULE = "unet.training.multinode"


def input_memory_mb(job_mem_mb: int | None) -> int | None:
    """The input pipeline's share of a training job's memory (MB): half of `mem_mb` inside a SLURM
    job, where it is the limit SLURM enforces; None elsewhere, where Snakemake's default `mem_mb`
    is a guess from the input files' sizes rather than a limit."""
    if job_mem_mb and "SLURM_JOB_ID" in os.environ:
        return max(1, int(job_mem_mb) // 2)
    return None


def launch_mode(settings: TrainSettings) -> str:
    """"process", "nodes" or "horovod": how `launch` starts the training (module docstring)."""
    if settings.distribution == "horovod":
        return "horovod"
    return "nodes" if settings.nodes > 1 else "process"


def launch(job: TrainJob, threads: int, log: str | os.PathLike | None = None, local_gpus: int = 0,
           launcher: str = "srun", horovod_repo: str | os.PathLike = ".") -> None:
    """Train `job` and wait; raise if a worker fails.

    threads: CPUs of each process (the rule's `threads`); log: where the output goes, the workers'
    included (srun --label and horovodrun prefix their lines); local_gpus: GPUs of this machine
    to take (the rule's `gpu` resource; inside SLURM, SLURM assigns them); launcher: how a SLURM
    job starts tasks (the rule's `mpi` resource, e.g. `srun --mpi=pmix`); horovod_repo: the folder
    holding .venv-horovod.
    """
    configure_tensorflow(threads)
    mode = launch_mode(job.settings)
    assign_gpus(local_gpus)  # before TensorFlow starts here, or in the workers that inherit it
    with output_to(log):
        if mode == "process":
            train_worker(job)
            return
        job_file = job.save(Path(job.out_dir) / JOB_FILE)
        settings = job.settings
        if mode == "nodes":
            launch_workers(job_file, settings.nodes, settings.gpus, threads, launcher)
            return
        cmd = horovod_command(job_file, horovod_python(horovod_repo), settings.gpus, settings.nodes,
                              launcher=launcher, in_slurm="SLURM_JOB_ID" in os.environ)
        print("starting the Horovod workers:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def worker_command(job_file: str | os.PathLike, python: str = sys.executable) -> list[str]:
    """One worker of the training described in `job_file`, run by `python`."""
    return [python, "-m", WORKER_MODULE, str(job_file)]


# -- One worker per node (train.nodes > 1) --------------------------------------------------------

def srun_command(job_file: str | os.PathLike, nodes: int, gpus: int, cpus: int, launcher: str = "srun") -> list[str]:
    """`launcher` (the rule's `mpi` resource, e.g. `srun` or `srun --mpi=pmix`) running a worker of
    `job_file` as one task per node, each with `cpus` CPUs and `gpus` GPUs; output lines labelled by task."""
    cmd = [*shlex.split(launcher), f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
           f"--cpus-per-task={max(1, cpus)}", "--kill-on-bad-exit=1", "--label"]
    if gpus > 0:
        cmd.append(f"--gpus-per-task={gpus}")
    return [*cmd, *worker_command(job_file)]


def launch_workers(job_file: str | os.PathLike, nodes: int, gpus: int, cpus: int, launcher: str = "srun") -> None:
    """Run a worker of `job_file` on each of `nodes` nodes of the current SLURM job and wait; raise
    if a task fails."""
    if "SLURM_JOB_ID" not in os.environ or shutil.which(shlex.split(launcher)[0]) is None:
        raise RuntimeError(f"config train.nodes={nodes}: training on several nodes runs inside a SLURM job; "
                           "run Snakemake with --workflow-profile profiles/slurm, or set train.nodes: 1")
    cmd = srun_command(job_file, nodes, gpus, cpus, launcher)
    print("starting one training process per node:", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


# -- Horovod (train.distribution: horovod) --------------------------------------------------------

def find_horovod():
    """Horovod's module spec in this Python, or None (without importing TensorFlow)."""
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


def horovod_command(job_file: str | os.PathLike, python: str, gpus: int, nodes: int,
                    launcher: str = "srun", in_slurm: bool = False) -> list[str]:
    """The command that trains `job_file` with one Horovod process per GPU (at least one per node)."""
    per_node = max(1, gpus)
    worker = worker_command(job_file, python)
    if in_slurm:
        cmd = [*shlex.split(launcher), f"--nodes={nodes}", f"--ntasks={per_node * nodes}",
               f"--ntasks-per-node={per_node}", "--kill-on-bad-exit=1", "--label"]
        return [*cmd, *(["--gpus-per-task=1"] if gpus > 0 else []), *worker]
    horovodrun = str(Path(python).parent / "horovodrun")
    return [horovodrun, "-np", str(per_node), "-H", f"localhost:{per_node}", "--gloo", *worker]
