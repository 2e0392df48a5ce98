"""Rule `benchmark_predict`: patch throughput/latency and whole-case stitching overhead of one fold."""
from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    from unet.inference.benchmark import run_benchmark

    p = snakemake.params
    summary = run_benchmark(snakemake.input.model, snakemake.input.splits, int(p.fold), p.preprocessed_dir,
                            snakemake.output[0], plans=snakemake.input.plans, section=p.predict,
                            batch_sizes=p.batch_sizes, warmup=p.warmup, steps=p.steps,
                            threads=snakemake.threads)
print(summary)
