"""Rule `postprocessing`: the steps that raise the cross-validation Dice -> postprocessing.json."""
from unet.evaluation.postprocessing import postprocessing_for_run
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    p = snakemake.params
    postprocessing_for_run(snakemake.input.predictions, snakemake.input.splits, p.folds, p.data_dir,
                           snakemake.output[0], plans=snakemake.input.plans, models=snakemake.input.models)
