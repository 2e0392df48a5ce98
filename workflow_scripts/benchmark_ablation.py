"""Rule `benchmark_ablation`: Dice per label with each recipe switch flipped, against the defaults."""
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    from unet.bench.ablation import format_table, run_ablation

    p = snakemake.params
    report = run_ablation(p.snakefile, seeds=p.seeds, n_cases=p.cases, epochs=p.epochs, steps=p.steps_per_epoch,
                          plan=dict(p.plan), cores=snakemake.threads, work_dir=p.work_dir, out=snakemake.output[0])
    table = format_table(report)
    print(table)
print(f"{table}\nwritten to {snakemake.output[0]}")
