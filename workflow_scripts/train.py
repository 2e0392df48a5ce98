"""Rule `train`: one fold of the cross-validation (or fold `all`: every case), in this process or
in workers it starts (several nodes, or Horovod): see unet/training/launch.py."""
from pathlib import Path

from unet.data.splits import parse_fold
from unet.training.launch import input_memory_mb, launch
from unet.training.multinode import TrainJob

# The whole section, execution settings included (params leave those out: rules/train.smk); the
# input pipeline's memory from the job's resources.
config = {**snakemake.config["train"], "input_memory_mb": input_memory_mb(snakemake.resources.get("mem_mb"))}
job = TrainJob.for_fold(snakemake.input.splits, parse_fold(snakemake.wildcards.fold), plans=snakemake.input.plans,
                        shards=snakemake.input.shards, model=snakemake.output.model, curves=snakemake.output.curves,
                        config=config, dataset_ok=snakemake.input.ready,
                        configuration=snakemake.wildcards.configuration)
launch(job, snakemake.threads, log=snakemake.log[0], local_gpus=snakemake.resources.get("gpu", 0),
       launcher=snakemake.resources.get("mpi", "srun"), horovod_repo=Path(snakemake.scriptdir).parent)
