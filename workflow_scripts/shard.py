"""Rule `shard`: TFRecord shards of the preprocessed training cases, and the k-fold splits."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    # Imported inside the log redirection so TensorFlow's start-up messages land in the log.
    from unet.data.shards import write_shards
    from unet.data.splits import make_splits
    from unet.io.atomic import write_json

    p = snakemake.params
    write_shards(Path(snakemake.input.images[0]).parent, p.case_ids, snakemake.output.shards)
    write_json(snakemake.output.splits, make_splits(p.case_ids, p.nfolds, p.split_seed))
