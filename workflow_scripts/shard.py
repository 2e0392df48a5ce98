"""Rule `shard`: TFRecord shards of the preprocessed training cases (with the cascade's previous
stage as extra channels)."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    # Imported inside the log redirection so TensorFlow's start-up messages land in the log.
    from unet.data.shards import write_shards

    write_shards(Path(snakemake.input.images[0]).parent, snakemake.params.case_ids, snakemake.output.shards)
