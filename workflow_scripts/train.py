"""Rule `train`: one fold of the cross-validation.

With `train.nodes` > 1 (SLURM) this script runs first in the job's batch step, which starts one
copy of it per node with srun and waits, then in each copy, as one worker of the multi-node
training (unet/training/multinode.py). With `train.distribution: horovod` it writes the fold's
arguments to a job file and starts one Horovod worker per GPU in .venv-horovod (srun inside a
SLURM job, horovodrun elsewhere) and waits.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from unet.inference.regions import trained_regions
from unet.io.atomic import read_json
from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow
from unet.training import multinode

configure_tensorflow(snakemake.threads)
# `resume` comes from config, not params (see rules/train.smk); `regions: dataset` is resolved from
# what the download stage found, so every worker trains on the same explicit regions.
train_config = {**snakemake.params.train, "resume": bool(snakemake.config["train"].get("resume", False)),
                "regions": trained_regions(snakemake.params.train.get("regions"),
                                           read_json(snakemake.input.ready).get("regions"))}
nodes = int(snakemake.params.train.get("nodes", 1))
gpus = int(snakemake.params.train.get("gpus", 1))
if snakemake.params.train.get("distribution", "auto") == "horovod":
    assign_gpus(snakemake.resources.get("gpu", 0))  # the workers inherit this job's GPUs
    with output_to(snakemake.log[0]):
        from unet.data.splits import load_fold

        split = load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))
        out_dir = Path(snakemake.output.model).parent
        out_dir.mkdir(parents=True, exist_ok=True)
        job = out_dir / "horovod_job.json"
        job.write_text(json.dumps({
            "plans": snakemake.input.plans, "shards": snakemake.input.shards, "train": split["train"],
            "val": split["val"], "out_dir": str(out_dir), "model": snakemake.output.model,
            "curves": snakemake.output.curves,
            "settings": train_config}))
        cmd = multinode.horovod_command(job, multinode.horovod_python(Path(snakemake.scriptdir).parent), gpus,
                                        nodes, launcher=snakemake.resources.get("mpi", "srun"),
                                        in_slurm="SLURM_JOB_ID" in os.environ)
        print("starting the Horovod workers:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
elif nodes > 1 and not multinode.is_worker(sys.argv):
    with output_to(snakemake.log[0]):  # srun --label gathers the workers' output here
        multinode.launch_workers(sys.argv[0], nodes, gpus, snakemake.threads,
                                 launcher=snakemake.resources.get("mpi", "srun"))
else:
    assign_gpus(snakemake.resources.get("gpu", 0))
    with output_to(snakemake.log[0] if nodes == 1 else None):
        from unet.data.splits import load_fold
        from unet.preprocessing.plan import Plan
        from unet.training.loop import train_fold
        from unet.training.settings import TrainSettings

        split = load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))
        settings = TrainSettings.from_config(train_config)
        rank = multinode.worker_rank() if nodes > 1 else 0
        with multinode.worker_outputs(Path(snakemake.output.model).parent, snakemake.output.model,
                                      snakemake.output.curves, rank, settings.resume) as (out_dir, model, curves):
            train_fold(Plan.load(snakemake.input.plans), settings, snakemake.input.shards, split["train"],
                       split["val"], out_dir=out_dir, model_path=model, curves_path=curves)
