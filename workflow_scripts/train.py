"""Rule `train`: one fold of the cross-validation."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    from unet.data.splits import load_fold
    from unet.preprocessing.planning import Plan
    from unet.training.loop import train_fold
    from unet.training.settings import TrainSettings

    split = load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))
    # `resume` comes from config, not params: see rules/train.smk.
    settings = TrainSettings.from_config({**snakemake.params.train,
                                          "resume": bool(snakemake.config["train"].get("resume", False))})
    train_fold(Plan.load(snakemake.input.plans), settings, snakemake.input.shards, split["train"], split["val"],
               out_dir=Path(snakemake.output.model).parent, model_path=snakemake.output.model,
               curves_path=snakemake.output.curves)
