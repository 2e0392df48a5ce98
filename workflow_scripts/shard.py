"""Rule `shard`: TFRecord shards of the preprocessed training cases, and the k-fold splits."""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unet.data.shards import write_shards  # noqa: E402
from unet.data.splits import make_splits  # noqa: E402
from unet.io.atomic import write_json  # noqa: E402
from unet.io.logs import output_to  # noqa: E402

with output_to(snakemake.log[0]):
    p = snakemake.params
    write_shards(Path(snakemake.input.images[0]).parent, p.case_ids, snakemake.output.shards)
    write_json(snakemake.output.splits, make_splits(p.case_ids, p.nfolds, p.split_seed))
