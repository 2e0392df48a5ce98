"""Rule `ensemble`: the test images (imagesTs), probabilities averaged over the trained folds."""
from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
with output_to(snakemake.log[0]):
    from unet.io.atomic import read_json
    from unet.inference.regions import trained_regions
    from unet.inference.predict import PredictSettings, predict_cases, raw_inputs
    from unet.io.msd import load_dataset
    from unet.preprocessing.plan import Plan

    plan = Plan.load(snakemake.input.plans)
    # A region-trained model outputs one sigmoid per region: its label map is painted region by region.
    regions = trained_regions(snakemake.params.regions, read_json(snakemake.input.ready).get("regions"))
    settings = PredictSettings.from_config({**snakemake.params.predict, "regions": regions,
                                           "background_outside_mask": plan.nonzero_mask})
    cases = load_dataset(snakemake.params.data_dir).test
    predict_cases(list(snakemake.input.models), raw_inputs(cases, plan), len(cases), snakemake.output[0],
                  plan.patch_size, plan.label_values, settings)
