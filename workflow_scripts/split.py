"""Rule `split`: the k-fold splits of the training cases -> splits.json."""
from unet.data.splits import make_splits
from unet.io.atomic import write_json
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    p = snakemake.params
    write_json(snakemake.output[0], make_splits(p.case_ids, p.nfolds, p.split_seed))
