"""Rule `benchmark_preprocess`: our fingerprint + plan + preprocess against nnU-Net v2's
plan_and_preprocess on a generated BraTS-like dataset (wall times, spacing, shapes, correlations)."""
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    from unet.bench.preprocess import format_report, run_benchmark

    p = snakemake.params
    report = run_benchmark(n_cases=p.cases, cores=snakemake.threads, seed=p.seed, out=snakemake.output[0])
    table = format_report(report)
    print(table)
print(f"{table}\nwritten to {snakemake.output[0]}")
