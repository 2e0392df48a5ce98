"""Rule `train`: one fold of the cross-validation.

With `train.nodes` > 1 (SLURM) this script runs first in the job's batch step, which starts one
copy of it per node with srun and waits, then in each copy, as one worker of the multi-node
training (unet/training/multinode.py).
"""
import sys
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow
from unet.training import multinode

configure_tensorflow(snakemake.threads)
nodes = int(snakemake.params.train.get("nodes", 1))
if nodes > 1 and not multinode.is_worker(sys.argv):
    with output_to(snakemake.log[0]):  # srun --label gathers the workers' output here
        multinode.launch_workers(sys.argv[0], nodes, int(snakemake.params.train.get("gpus", 1)), snakemake.threads,
                                 launcher=snakemake.resources.get("mpi", "srun"))
else:
    assign_gpus(snakemake.resources.get("gpu", 0))
    with output_to(snakemake.log[0] if nodes == 1 else None):
        from unet.data.splits import load_fold
        from unet.preprocessing.planning import Plan
        from unet.training.loop import train_fold
        from unet.training.settings import TrainSettings

        split = load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))
        # `resume` comes from config, not params: see rules/train.smk.
        settings = TrainSettings.from_config({**snakemake.params.train,
                                              "resume": bool(snakemake.config["train"].get("resume", False))})
        rank = multinode.worker_rank() if nodes > 1 else 0
        with multinode.worker_outputs(Path(snakemake.output.model).parent, snakemake.output.model,
                                      snakemake.output.curves, rank, settings.resume) as (out_dir, model, curves):
            train_fold(Plan.load(snakemake.input.plans), settings, snakemake.input.shards, split["train"],
                       split["val"], out_dir=out_dir, model_path=model, curves_path=curves)
