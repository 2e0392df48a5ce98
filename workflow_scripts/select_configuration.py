"""Rule `select_configuration`: the best configuration or pair ensemble -> best_configuration.json."""
from unet.evaluation.choice import select_for_run
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    p, inputs = snakemake.params, snakemake.input
    select_for_run(p.predictions, inputs.splits, p.folds, p.data_dir, plans=inputs.plans,
                   out=snakemake.output.best, table=snakemake.output.table,
                   model_info=inputs.info[0] if inputs.info else None)
