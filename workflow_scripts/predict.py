"""Rule `predict`: the validation cases of one fold, written in their raw geometry."""
from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
# Execution settings (batch_size) from config, the rest from params (probabilities saved when
# configurations are selected: rules/common.smk, predict_params).
section = {**snakemake.config["predict"], **snakemake.params.predict}
with output_to(snakemake.log[0]):
    from unet.inference.predict import predict_fold

    predict_fold(snakemake.input.model, snakemake.input.splits, int(snakemake.wildcards.fold),
                 snakemake.params.preprocessed_dir, snakemake.output[0], plans=snakemake.input.plans,
                 dataset_ok=snakemake.input.ready, section=section,
                 previous_dir=snakemake.input.get("previous"))
