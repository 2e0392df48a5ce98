"""Rule `evaluate`: per-case, per-label (and region) metrics of one fold's validation predictions."""
from unet.evaluation.evaluate import evaluate_fold
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    p = snakemake.params
    evaluate_fold(snakemake.input.predictions, snakemake.input.splits, int(snakemake.wildcards.fold),
                  p.data_dir, snakemake.output[0], plans=snakemake.input.plans, regions=p.regions, empty=p.empty)
