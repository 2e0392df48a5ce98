"""Rule `predict`: the validation cases of one fold, written in their raw geometry."""
from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
with output_to(snakemake.log[0]):
    from unet.data.splits import load_fold
    from unet.io.atomic import read_json
    from unet.inference.regions import trained_regions
    from unet.inference.predict import PredictSettings, predict_cases, preprocessed_inputs
    from unet.preprocessing.plan import Plan

    plan = Plan.load(snakemake.input.plans)
    # A region-trained model outputs one sigmoid per region: its label map is painted region by region.
    regions = trained_regions(snakemake.params.regions, read_json(snakemake.input.ready).get("regions"))
    settings = PredictSettings.from_config({**snakemake.params.predict, "regions": regions,
                                           "background_outside_mask": plan.nonzero_mask})
    cases = load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))["val"]
    predict_cases([snakemake.input.model], preprocessed_inputs(snakemake.params.preprocessed_dir, cases),
                  len(cases), snakemake.output[0], plan.patch_size, plan.label_values, settings)
