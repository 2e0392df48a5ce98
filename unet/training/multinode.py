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
    return int(os.environ.get("SLURM_PROCID", "0"))


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
