"""Training speed: throughput and latency of training steps, and the FLOP rate they achieve.

Per cell of a small grid (AMP on/off, XLA on/off) and a given batch and patch size: `warmup`
untimed steps on random data, then `steps` timed ones; throughput in images (patches) per second
and latency per step (mean, 90/95/99th percentiles, ms), the table of NVIDIA's nnU-Net README.
Three ways to run the same network (the plan's filters; strides and kernels re-planned for the
benchmark patch) and loss:

- `tensorflow loop`: the training loop's own step (`FoldTrainer`'s `tf.function` step under its
  distribution strategy, optimizer and loss scaling), what `train` runs;
- `tensorflow compile`: `model.compile(loss=...)` + `train_on_batch`, like for like with JAX;
- `jax compile`: the same under KERAS_BACKEND=jax, in a virtualenv of its own (`make bench-env`;
  `unet.bench.train_jax`), since the project's own environment has no JAX.

FLOPs (`unet.bench.flops`): 2 per multiply-add of the convolutions, counted analytically; a
training step is taken as 3x the forward pass. NVIDIA's TF2 nnU-Net reaches 29.3 img/s on one
A100 80GB (AMP, batch 2, 128x128x128x4); `reference` gives the FLOP/s that is by this
convention, for comparison with `achieved_tflop_s` on your GPU.

Each row's FLOP rate is also a fraction (`peak_fraction`) of the machine's own float32 matmul rate
on the same threads (`unet.bench.peak`), which travels between machines where img/s does not; the
JSON and the table's header say what it depends on: CPU, vector extensions, threads, oneDNN.

    python -m unet.bench.train --jax-venv .bench/jax-venv --patch 32 --batch 2 --out train.json [--plans plans.json]
    python -m unet.bench.train --no-jax --patch 32    # TensorFlow only
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from unet.bench.flops import plan_forward_flops
from unet.bench.peak import available_threads, matmul_peak, peak_fraction
from unet.bench.reference_env import jax_python
from unet.bench.train_jax import run_jax
from unet.io.atomic import write_json
from unet.preprocessing.plan import Plan
from unet.preprocessing.topology import filters_per_level, topology
from unet.runtime import machine_info

# NVIDIA DeepLearningExamples, TensorFlow2 nnU-Net README: training throughput, 1x A100 80GB,
# AMP, batch 2, BraTS (4 channels) at 128x128x128.
NVIDIA_REFERENCE = {"throughput_img_s": 29.3, "batch_size": 2, "patch_size": [128, 128, 128], "channels": 4,
                    "classes": 4, "gpu": "A100 80GB", "amp": True}


# -- the network to time ---------------------------------------------------------------------------
def benchmark_plan(plan: Plan, patch_size: Sequence[int]) -> Plan:
    """`plan` with its network re-planned for `patch_size`: strides and kernels from `topology`,
    the plan's filters per level (the last repeated if the patch allows more levels)."""
    patch, strides, kernels = topology(patch_size, plan.spacing)
    if tuple(patch) != tuple(patch_size):
        raise ValueError(f"--patch {list(patch_size)}: not divisible by the network's total stride; "
                         f"nearest valid {list(patch)}")
    levels = len(strides)
    filters = tuple((list(plan.filters) + [plan.filters[-1]] * levels)[:levels])
    return dataclasses.replace(plan, patch_size=tuple(patch), strides=strides, kernels=kernels, filters=filters)


def default_plan(num_channels: int = 4, num_classes: int = 4) -> Plan:
    """A BraTS-like plan (isotropic 1 mm, nnU-Net's filters 32 doubling to 320), for a benchmark
    without a plans.json; the patch is set by `benchmark_plan`."""
    patch, strides, kernels = topology((128, 128, 128), (1.0, 1.0, 1.0))
    return Plan(dataset="benchmark", modalities=tuple(f"channel{i}" for i in range(num_channels)),
                labels={i: ("background" if i == 0 else f"label{i}") for i in range(num_classes)},
                spacing=(1.0, 1.0, 1.0), patch_size=patch, batch_size=2, filters=filters_per_level(len(strides)),
                strides=strides, kernels=kernels, normalization=())


def random_batch(plan: Plan, batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *plan.patch_size, plan.input_channels)).astype(np.float32)
    segs = rng.integers(0, plan.num_classes, (batch_size, *plan.patch_size)).astype(np.int32)
    return images, segs


# -- timing ----------------------------------------------------------------------------------------
def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"mean": float(ms.mean()), "p90": float(np.percentile(ms, 90)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99))}


def time_steps(step, warmup: int, steps: int) -> list[float]:
    """Wall seconds of each of `steps` calls of `step()` (which must block until done), after
    `warmup` untimed calls (tracing and compilation happen there)."""
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def result_row(framework: str, path: str, amp, xla: bool, batch_size: int, patch_size, seconds,
               flops_per_patch: int, warmup: int) -> dict:
    throughput = batch_size * len(seconds) / float(np.sum(seconds))
    return {"framework": framework, "path": path, "amp": amp, "xla": xla, "batch_size": int(batch_size),
            "resolution": "x".join(str(p) for p in patch_size), "throughput_img_s": throughput,
            "latency_ms": latency_ms(seconds), "achieved_tflop_s": 3 * flops_per_patch * throughput / 1e12,
            "steps": len(seconds), "warmup": warmup}


def _policy(amp) -> str:
    """As the training loop's `train.amp`: false, true (= float16), float16, bfloat16."""
    if not amp:
        return "float32"
    return "mixed_bfloat16" if amp == "bfloat16" else "mixed_float16"


def _settings(amp, xla: bool):
    from unet.training.settings import TrainSettings

    return TrainSettings(amp=amp, xla=xla, deep_supervision=False, augment=False, gpus=1, seed=0)


def compile_step(plan: Plan, batch_size: int, amp, xla: bool):
    """`model.compile` with the training loss + `train_on_batch` (any Keras backend)."""
    import keras

    from unet.training.objective import Objective

    keras.mixed_precision.set_global_policy(_policy(amp))
    keras.utils.set_random_seed(0)
    objective = Objective(plan, _settings(amp, xla))
    model = objective.build_model()
    # Keras wraps the optimizer in a LossScaleOptimizer itself under mixed_float16.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=objective.loss, jit_compile=xla)
    images, segs = random_batch(plan, batch_size)
    return lambda: model.train_on_batch(images, segs)


def loop_step(plan: Plan, batch_size: int, amp, xla: bool):
    """The training loop's own step function, taken from a `FoldTrainer` (TensorFlow only)."""
    import keras
    import tensorflow as tf

    from unet.training.loop import FoldTrainer

    keras.mixed_precision.set_global_policy("float32")
    # No data and no checkpoints are written: the trainer only builds model, optimizer and step.
    with tempfile.TemporaryDirectory(prefix="bench_train_") as out_dir:
        trainer = FoldTrainer(dataclasses.replace(plan, batch_size=batch_size), _settings(amp, xla), ".", [], [],
                              out_dir)
        trainer._build()
        train_step = trainer._steps()[0]
    images, segs = random_batch(plan, batch_size)
    batch = (tf.constant(images), tf.constant(segs))
    return lambda: float(train_step(batch))  # float() waits for the step to finish


def run_grid(plan: Plan, batch_size: int, amps, xlas, warmup: int, steps: int, paths: Sequence[str]) -> list[dict]:
    """Rows for every (path, amp, xla) on the current Keras backend."""
    import keras

    backend = keras.backend.backend()
    flops = plan_forward_flops(plan)
    rows = []
    for path in paths:
        for amp in amps:
            for xla in xlas:
                make = loop_step if path == "loop" else compile_step
                step = make(plan, batch_size, amp, xla)
                seconds = time_steps(step, warmup, steps)
                rows.append(result_row(backend, path, amp, xla, batch_size, plan.patch_size, seconds, flops, warmup))
                print(format_row(rows[-1]), file=sys.stderr, flush=True)
                keras.mixed_precision.set_global_policy("float32")
                keras.backend.clear_session()
    return rows


# -- the whole benchmark ---------------------------------------------------------------------------
def environment(threads: int | None) -> dict:
    import keras
    import tensorflow as tf

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": threads, "keras": keras.__version__, "tensorflow": tf.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def reference() -> dict:
    """NVIDIA's figure, and the TFLOP/s it means by our convention for its network (128^3x4,
    filters 32 doubling to 320, six levels: our planner's network for that patch)."""
    nv = NVIDIA_REFERENCE
    big = benchmark_plan(default_plan(nv["channels"], nv["classes"]), nv["patch_size"])
    flops = plan_forward_flops(big)
    return {**nv, "filters": list(big.filters), "forward_gflop_per_patch": flops / 1e9,
            "tflop_s": 3 * flops * nv["throughput_img_s"] / 1e12}


def device_amps(amps, gpu: bool) -> list:
    """AMP `True` is float16 on a GPU; without one, bfloat16: CPUs have no fast float16 kernels
    (TensorFlow falls back to Eigen's emulation, orders of magnitude slower)."""
    return [("bfloat16" if amp is True and not gpu else amp) for amp in amps]


def benchmark_train(plan: Plan, patch_size: Sequence[int], batch_size: int, amps=(False, True),
                    xlas=(False, True), warmup: int = 3, steps: int = 20, jax: bool = True,
                    threads: int | None = None, jax_venv: str | Path | None = None) -> dict:
    """The matmul peak on `threads` (default: all this process may use), the grid on TensorFlow
    (loop and compile), then with `jax` the `jax compile` rows from the virtualenv `jax_venv`
    (`make bench-env`); rows (each with its fraction of the peak), FLOPs, machine, environment
    and NVIDIA's reference."""
    import tensorflow as tf

    if jax:
        jax_python(jax_venv)  # a missing virtualenv stops here, before the TensorFlow grid
    plan = benchmark_plan(plan, patch_size)
    cpu_threads = threads or available_threads()
    peak = matmul_peak(cpu_threads)
    amps = device_amps(amps, bool(tf.config.list_physical_devices("GPU")))
    rows = run_grid(plan, batch_size, amps, xlas, warmup, steps, ["loop", "compile"])
    jax_info = None
    if jax:
        result = run_jax(plan, batch_size, amps, warmup, steps, jax_venv, threads)
        rows += result.pop("rows")
        jax_info = result
    for row in rows:
        row["peak_fraction"] = peak_fraction(row, peak)
    flops = plan_forward_flops(plan)
    return {"machine": machine_info(cpu_threads), "peak": peak,
            "environment": {**environment(threads), "jax": jax_info},
            "network": {"patch_size": list(plan.patch_size), "channels": plan.num_channels,
                        "classes": plan.num_classes, "filters": list(plan.filters),
                        "strides": [list(s) for s in plan.strides], "kernels": [list(k) for k in plan.kernels]},
            "flops": {"forward_gflop_per_patch": flops / 1e9, "train_step_gflop_per_patch": 3 * flops / 1e9,
                      "convention": "2 FLOPs per multiply-add of the convolutions and transposed convolutions "
                                    "(no normalization/activation/softmax); training step = 3x forward"},
            "rows": rows, "reference": reference()}


def format_row(row: dict) -> str:
    lat = row["latency_ms"]
    amp = {False: "off", True: "fp16"}.get(row["amp"], row["amp"])
    # The grid prints each row as it is measured, before the peak is set on it.
    fraction = f"{row['peak_fraction']:.1%}" if "peak_fraction" in row else "-"
    return (f"| {row['framework']} {row['path']} | {amp} | {'on' if row['xla'] else 'off'} | {row['batch_size']} | "
            f"{row['resolution']} | {row['throughput_img_s']:.2f} | {lat['mean']:.1f} | {lat['p90']:.1f} | "
            f"{lat['p95']:.1f} | {lat['p99']:.1f} | {row['achieved_tflop_s'] * 1000:.1f} | {fraction} |")


def format_header(machine: dict, peak: dict) -> list[str]:
    return [f"CPU: {machine['cpu']} ({', '.join(machine['vector_extensions']) or 'no vector extensions known'}); "
            f"{machine['threads']} threads; oneDNN {'on' if machine['onednn'] else 'off'}",
            f"matmul peak: {peak['gflop_s']:.1f} GFLOP/s ({peak['dtype']} {peak['matmul_size']}^2 on "
            f"{peak['threads']} threads: numpy {peak['numpy_gflop_s']:.1f}, "
            f"TensorFlow with oneDNN {peak['tensorflow_onednn_gflop_s']:.1f})", ""]


def format_table(result: dict) -> str:
    lines = format_header(result["machine"], result["peak"])
    lines += ["| Step | AMP | XLA | Batch size | Resolution | Throughput Avg [img/s] | Latency Avg [ms] | "
              "Latency 90% [ms] | Latency 95% [ms] | Latency 99% [ms] | Achieved [GFLOP/s] | Of peak |",
              "|:--|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|"]
    lines += [format_row(row) for row in result["rows"]]
    flops, ref = result["flops"], result["reference"]
    lines += ["", f"forward {flops['forward_gflop_per_patch']:.3f} GFLOP per patch; {flops['convention']}",
              f"reference: NVIDIA TF2 nnU-Net {ref['throughput_img_s']} img/s on {ref['gpu']} (AMP, batch "
              f"{ref['batch_size']}, 128^3x4) = {ref['tflop_s']:.1f} TFLOP/s by this convention "
              f"({ref['forward_gflop_per_patch']:.0f} GFLOP forward per patch, filters {ref['filters']})"]
    return "\n".join(lines)


def run_benchmark(plans: str | Path, out: str | Path, *, fold: int, patch_size: Sequence[int] | None = None,
                  batch_size: int = 2, amps=(False, True), xlas=(False, True), warmup: int = 3, steps: int = 20,
                  jax: bool = True, threads: int | None = None, jax_venv: str | Path | None = None) -> str:
    """Rule `benchmark_train`: `benchmark_train` of the plan `plans` (its patch unless `patch_size`),
    written with the plans' path and `fold` to `out` (JSON), its table printed. Returns what to
    tell the user: the table and where it is."""
    plan = Plan.load(plans)
    result = benchmark_train(plan, patch_size or plan.patch_size, batch_size, amps, xlas, warmup, steps,
                             jax=jax, threads=threads, jax_venv=jax_venv)
    write_json(out, {"plans": str(plans), "fold": fold, **result})
    table = format_table(result)
    print(table)
    return f"benchmark_train ({plans}):\n{table}\nwritten to {out}"


def _flag_list(text: str) -> list:
    values = {"off": False, "false": False, "on": True, "true": True, "fp16": True, "float16": "float16",
              "bf16": "bfloat16", "bfloat16": "bfloat16"}
    return [values[v.strip().lower()] for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", help="plans.json whose filters to use (default: BraTS-like, 32..320)")
    parser.add_argument("--patch", type=int, nargs="+", default=[32], help="patch edge (one value: a cube)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--amp", default="off,on", help="comma list of off/on/bf16")
    parser.add_argument("--xla", default="off,on", help="comma list of off/on")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-jax", action="store_true", help="skip the KERAS_BACKEND=jax measurement")
    parser.add_argument("--jax-venv", help="folder of the JAX virtualenv (required unless --no-jax; "
                                           "`make bench-env` builds .bench/jax-venv)")
    parser.add_argument("--threads", type=int, default=None, help="default: all CPUs this process may use")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    if not args.no_jax:
        try:
            jax_python(args.jax_venv)
        except (ValueError, FileNotFoundError) as error:
            parser.error(f"{error}; or measure TensorFlow only with --no-jax")
    from unet.runtime import configure_tensorflow

    # As `train` runs it (oneDNN on unless TF_ENABLE_ONEDNN_OPTS is set), on all CPUs by default.
    threads = args.threads or available_threads()
    configure_tensorflow(threads)
    plan = Plan.load(args.plans) if args.plans else default_plan()
    patch = args.patch * 3 if len(args.patch) == 1 else args.patch
    result = benchmark_train(plan, patch, args.batch, _flag_list(args.amp), _flag_list(args.xla), args.warmup,
                             args.steps, jax=not args.no_jax, threads=threads, jax_venv=args.jax_venv)
    if args.out:
        write_json(args.out, result)
    print(format_table(result))


if __name__ == "__main__":
    main()
