"""Rule `shard`: TFRecord shards of the preprocessed training cases, and the k-fold splits."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    # Imported inside the log redirection so TensorFlow's start-up messages land in the log.
    from unet.data.shards import write_shards_and_splits

    p = snakemake.params
    write_shards_and_splits(Path(snakemake.input.images[0]).parent, p.case_ids, snakemake.output.shards,
                            snakemake.output.splits, p.nfolds, p.split_seed)
