"""Rule `benchmark_train`: training-step throughput/latency and FLOP rate (TensorFlow and JAX)."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
with output_to(snakemake.log[0]):
    from unet.bench.train import benchmark_train, format_table
    from unet.io.atomic import write_json
    from unet.preprocessing.plan import Plan

    plan = Plan.load(snakemake.input.plans)
    p = snakemake.params
    result = benchmark_train(plan, p.patch_size or plan.patch_size, p.batch_size, p.amp, p.xla, p.warmup,
                             p.steps, jax=p.jax, threads=snakemake.threads,
                             jax_venv=Path(snakemake.input.jax_venv).parent)  # the input is the stamp inside it
    write_json(snakemake.output[0], {"plans": snakemake.input.plans, "fold": p.fold, **result})
    table = format_table(result)
    print(table)
print(f"benchmark_train ({snakemake.input.plans}):\n{table}\nwritten to {snakemake.output[0]}")
