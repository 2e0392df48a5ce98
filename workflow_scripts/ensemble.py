"""Rule `ensemble`: the test images (imagesTs), probabilities averaged over the trained folds."""
from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
# Execution settings (batch_size) from config, the rest from params (probabilities saved when
# configurations are selected: rules/common.smk, predict_params).
section = {**snakemake.config["predict"], **snakemake.params.predict}
with output_to(snakemake.log[0]):
    from unet.inference.predict import predict_test_set

    predict_test_set(snakemake.input.models, snakemake.params.data_dir, snakemake.output[0],
                     plans=snakemake.input.plans, section=section,
                     previous_predictions=snakemake.input.previous[0] if snakemake.input.previous else None)
