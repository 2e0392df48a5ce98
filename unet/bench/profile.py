"""Where a training step's time goes, in figures that hold on a shared machine.

`python -m unet.bench.train` times steps by the wall clock, which other jobs on the machine
stretch (on this repository's 2-core VM, repeated runs scattered by 2x). This tool measures what
they do not change much, for the same step (the training loop's, `unet.bench.train.loop_step`):

- CPU time per step (all threads of the process): the work done, whatever the waiting;
- TensorFlow's op durations from its profiler, each op's the minimum over the traced steps (an op
  that was preempted in one step ran whole in another), summed by kind: convolutions forward and
  backward, instance normalization, activations, skip concatenations, transposed convolutions,
  heads, loss, optimizer. On a very busy machine even the minimum of a long op includes waiting
  (the sum then exceeds the CPU time, and the table says so).

The FLOP rate per CPU second, against a float32 matrix product's (TensorFlow's, timed alike), is
the fraction of the matmul peak the step would reach if its threads never waited: with one thread,
what `unet.bench.train` would show on an otherwise idle machine.

    python -m unet.bench.profile --plans results/demo/plans.json --patch 32 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import re
import tempfile
import time
from typing import Sequence

import numpy as np

from unet.bench.flops import plan_forward_flops
from unet.bench.train import benchmark_plan, default_plan, loop_step
from unet.preprocessing.plan import Plan

# Op scopes name the network's layers (unet.model.network): enc0a_conv, dec1b_norm, up0, skip0...
_LAYER = re.compile(r"(?:enc|dec)\d+[ab]_(conv|norm|act)|(?<![a-z])(up|skip)\d|(?<![a-z])(head|logits)")
_KINDS = {"conv": "convolution", "norm": "normalization", "act": "activation", "up": "transposed convolution",
          "skip": "concatenation", "head": "head", "logits": "head"}


def op_kind(name: str) -> str:
    """'convolution backward', 'normalization forward', 'loss forward', 'optimizer'... of a
    profiled op named 'scope/.../op:Type'."""
    scope, _, op_type = name.rpartition(":")
    if "adam" in scope.lower() or "sgd" in scope.lower() or "optimizer" in scope.lower():
        return "optimizer"
    backward = "gradient_tape" in scope or "_grad" in scope or op_type.endswith("Grad")
    if "instance_norm_grad" in scope:
        kind = "normalization"
    else:
        match = _LAYER.search(scope)
        kind = _KINDS[next(g for g in match.groups() if g)] if match else "loss and other"
    return f"{kind} {'backward' if backward else 'forward'}"


def trace_op_durations(step, steps: int) -> dict[str, list[float]]:
    """Milliseconds of every TensorFlow op run by `steps` calls of `step()`, by op name."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory(prefix="unet_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                step()
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    durations = collections.defaultdict(list)
    for plane in (p for p in space.planes if p.name.startswith("/host:CPU")):
        for line in (line for line in plane.lines if line.name.startswith("tf_Compute")):
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # ops are 'scope:Type'; executor events 'A::B'
                    durations[name].append(event.duration_ps / 1e9)
    return dict(durations)


def breakdown(durations: dict[str, list[float]], steps: int) -> dict[str, float]:
    """Milliseconds per step by `op_kind`: each op's minimum duration times its runs per step."""
    kinds = collections.Counter()
    for name, ms in durations.items():
        kinds[op_kind(name)] += min(ms) * len(ms) / steps
    return dict(kinds.most_common())


def cpu_ms_per_step(step, steps: int) -> list[float]:
    seconds = []
    for _ in range(steps):
        start = time.process_time()
        step()
        seconds.append(time.process_time() - start)
    return [1000 * s for s in seconds]


def matmul_gflop_per_cpu_second(size: int = 2048, repeats: int = 10) -> float:
    """TensorFlow's float32 matrix product in this process, by CPU time (best of `repeats`): the
    peak per thread that `unet.bench.peak` measures by the wall clock, without the other jobs."""
    import tensorflow as tf

    a = tf.random.normal((size, size), seed=0)
    b = tf.random.normal((size, size), seed=1)
    tf.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        tf.matmul(a, b).numpy()
        best = min(best, time.process_time() - start)
    return 2 * size ** 3 / best / 1e9


def profile_train(plan: Plan, batch_size: int, threads: int, steps: int = 20, warmup: int = 5) -> dict:
    """CPU time per step and the op breakdown of the training loop's step (float32, no XLA)."""
    step = loop_step(plan, batch_size, False, False)
    for _ in range(warmup):
        step()
    cpu = cpu_ms_per_step(step, steps)
    durations = trace_op_durations(step, steps)
    kinds = breakdown(durations, steps)
    flops = 3 * plan_forward_flops(plan) * batch_size
    cpu_median = float(np.median(cpu))
    per_cpu_second = flops / cpu_median / 1e6
    peak = matmul_gflop_per_cpu_second()
    return {"filters": list(plan.filters), "patch_size": list(plan.patch_size), "batch_size": batch_size,
            "threads": threads, "cpu_ms_per_step": cpu_median,
            "ops_per_step": sum(map(len, durations.values())) / steps, "op_ms_per_step": sum(kinds.values()),
            "kinds_ms": kinds, "gflop_per_cpu_second": per_cpu_second,
            "matmul_gflop_per_cpu_second": peak, "peak_fraction_if_busy": per_cpu_second / peak}


def format_profile(result: dict) -> str:
    lines = [f"filters {result['filters']}, patch {result['patch_size']}, batch {result['batch_size']}, "
             f"{result['threads']} thread(s): CPU {result['cpu_ms_per_step']:.1f} ms per step, "
             f"{result['gflop_per_cpu_second']:.1f} GFLOP per CPU second = {result['peak_fraction_if_busy']:.1%} of "
             f"a float32 matrix product's ({result['matmul_gflop_per_cpu_second']:.1f})",
             f"ops: {result['ops_per_step']:.0f} per step, {result['op_ms_per_step']:.1f} ms "
             f"(each op's minimum over the steps)"]
    total = result["op_ms_per_step"]
    if total > result["cpu_ms_per_step"] * result["threads"]:
        lines.append("  (more than the CPU time: other jobs held the ops up in every traced step; the CPU time "
                     "holds, the shares below lean towards the longer ops)")
    lines += [f"  {kind:32s} {ms:7.2f} ms {ms / total:6.1%}" for kind, ms in result["kinds_ms"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", help="plans.json whose filters to use (default: BraTS-like, 32..320)")
    parser.add_argument("--patch", type=int, nargs="+", default=[32], help="patch edge (one value: a cube)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--filters", type=int, help="first level's filters instead of the plan's (doubling per level)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="1 (default): no thread waits for another")
    args = parser.parse_args(argv)
    from unet.runtime import configure_tensorflow

    configure_tensorflow(args.threads)
    plan = benchmark_plan(Plan.load(args.plans) if args.plans else default_plan(),
                          args.patch * 3 if len(args.patch) == 1 else args.patch)
    if args.filters:
        filters = tuple(min(args.filters * 2 ** i, 320) for i in range(len(plan.filters)))
        plan = dataclasses.replace(plan, filters=filters)
    print(format_profile(profile_train(plan, args.batch, args.threads, args.steps)))


if __name__ == "__main__":
    main()
