"""Rule `shard`: TFRecord shards of the preprocessed training cases (the cascade's with 3d_lowres'
segmentation of each case as extra channels)."""
from pathlib import Path

from unet.io.logs import output_to
from unet.preprocessing.plan import Plan
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    # Imported inside the log redirection so TensorFlow's start-up messages land in the log.
    from unet.data.shards import write_shards

    previous = snakemake.input.get("previous")
    write_shards(Path(snakemake.input.images[0]).parent, snakemake.params.case_ids, snakemake.output.shards,
                 previous_dir=previous,
                 num_classes=Plan.load(snakemake.input.plans, "3d_cascade_fullres").num_classes if previous else None)
