"""Rule `benchmark_accuracy`: our workflow against nnU-Net v2 at equal steps on a generated hard
dataset; per-label Dice side by side (our evaluation, raw grid) and time in training steps."""
from pathlib import Path

from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    from unet.bench.accuracy import run_benchmark
    from unet.bench.accuracy_report import format_report

    p = snakemake.params
    report = run_benchmark(Path(snakemake.input.nnunet_venv).parent,  # the input is the stamp inside it
                           p.snakefile, n_cases=p.cases, epochs=p.epochs, steps=p.steps_per_epoch, plan=dict(p.plan),
                           tta=p.tta, cores=snakemake.threads, seed=p.seed, work_dir=p.work_dir,
                           out=snakemake.output[0], configurations=p.configurations, plan_2d=dict(p.plan_2d))
    table = format_report(report)
    print(table)
print(f"{table}\nwritten to {snakemake.output[0]}")
