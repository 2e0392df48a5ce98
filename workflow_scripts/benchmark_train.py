"""Rule `benchmark_train`: training-step throughput/latency and FLOP rate (TensorFlow and JAX)."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import assign_gpus, configure_tensorflow

configure_tensorflow(snakemake.threads)
assign_gpus(snakemake.resources.get("gpu", 0))
with output_to(snakemake.log[0]):
    from unet.bench.train import run_benchmark

    p = snakemake.params
    summary = run_benchmark(snakemake.input.plans, snakemake.output[0], fold=p.fold, patch_size=p.patch_size,
                            batch_size=p.batch_size, amps=p.amp, xlas=p.xla, warmup=p.warmup, steps=p.steps,
                            jax=p.jax, threads=snakemake.threads,
                            jax_venv=Path(snakemake.input.jax_venv).parent)  # the input is the stamp inside it
print(summary)
