"""Rule `train`: one fold of the cross-validation."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_NUM_INTRAOP_THREADS"] = str(snakemake.threads)
os.environ["TF_NUM_INTEROP_THREADS"] = str(min(2, snakemake.threads))

from pathlib import Path  # noqa: E402

from unet.data.splits import load_fold  # noqa: E402
from unet.io.logs import output_to  # noqa: E402
from unet.preprocessing.planning import Plan  # noqa: E402
from unet.training.loop import train_fold  # noqa: E402
from unet.training.settings import TrainSettings  # noqa: E402

with output_to(snakemake.log[0]):
    fold = int(snakemake.wildcards.fold)
    split = load_fold(snakemake.input.splits, fold)
    settings = TrainSettings.from_config({**snakemake.params.train,
                                          "resume": bool(snakemake.config["train"].get("resume", False))})
    train_fold(Plan.load(snakemake.input.plans), settings, snakemake.input.shards, split["train"], split["val"],
               out_dir=Path(snakemake.output.model).parent, model_path=snakemake.output.model,
               curves_path=snakemake.output.curves)
