"""Rule `benchmark_predict`: patch throughput/latency and whole-case stitching overhead of one fold."""
from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    from unet.data.splits import load_fold
    from unet.inference.benchmark import benchmark_predict, format_tables
    from unet.inference.predict import (PredictSettings, ensemble_predictor, load_models,
                                        preprocessed_inputs)
    from unet.io.atomic import write_json
    from unet.preprocessing.plan import Plan

    plan = Plan.load(snakemake.input.plans)
    settings = PredictSettings.from_config(snakemake.params.predict)
    fold = int(snakemake.params.fold)
    cases = load_fold(snakemake.input.splits, fold)["val"]
    predictor = ensemble_predictor(load_models([snakemake.input.model]), settings.tta)
    result = benchmark_predict(predictor, plan.patch_size, plan.num_channels,
                               preprocessed_inputs(snakemake.params.preprocessed_dir, cases), settings,
                               batch_sizes=snakemake.params.batch_sizes, warmup=snakemake.params.warmup,
                               steps=snakemake.params.steps, threads=snakemake.threads)
    result = {"model": snakemake.input.model, "fold": fold, **result}
    write_json(snakemake.output[0], result)
    tables = format_tables(result)
    print(tables)
print(f"benchmark_predict (fold {fold}, model {snakemake.input.model}):\n{tables}\n"
      f"written to {snakemake.output[0]}")
