"""Rule `benchmark_preprocess`: our validate + fingerprint + plan + preprocess, in one process and
through Snakemake as users run it, against nnU-Net v2's plan_and_preprocess on a generated
BraTS-like dataset (wall times and ratios, spacing, shapes, correlations)."""
from pathlib import Path

from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    from unet.bench.preprocess import format_report, run_benchmark

    p = snakemake.params
    nnunet_venv = Path(snakemake.input.nnunet_venv).parent  # the input is the stamp inside it
    snakefile = Path(snakemake.scriptdir).parent / "Snakefile"  # this workflow's, config.yaml beside it
    report = run_benchmark(nnunet_venv, n_cases=p.cases, cores=snakemake.threads, seed=p.seed,
                           out=snakemake.output[0], snakefile=snakefile)
    table = format_report(report)
    print(table)
print(f"{table}\nwritten to {snakemake.output[0]}")
