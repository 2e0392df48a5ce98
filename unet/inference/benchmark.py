"""Inference speed: the network on fixed-size patches, and whole cases through the sliding window.

Patches: throughput (images/s) and latency per batch (mean and 90/95/99th percentiles, ms) after
warm-up calls, the table format of NVIDIA's nnU-Net benchmarks. Whole cases: the time of
`sliding_window_inference` on each case against the sum of the predictor's own call times on
the same windows; their ratio is the stitching overhead (cutting windows, batching, weighting and
accumulating, padding), 1.0 being none. The predictor is any callable, as for the sliding window.
Runtimes: the patch benchmark of the same network exported to each runtime this environment has
(`unet.inference.runtimes`: Keras, SavedModel, ONNX with its extra), on the same patches, batch
size by batch size, with each export's difference from Keras.
`run_benchmark` is the workflow's `benchmark_predict` rule.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from unet.data.splits import load_fold
from unet.inference.predict import (CaseInput, PredictSettings, ensemble_predictor, load_models,
                                    predict_case, preprocessed_inputs)
from unet.inference.restore import labels_from_cropped, probabilities_to_cropped
from unet.inference.runtime_export import export_runtimes, validation_patches
from unet.inference.runtimes import ONNX_INSTALL, RUNTIMES, available_runtimes, load_runtime
from unet.inference.sliding_window import Predictor
from unet.io.atomic import load_npy, write_json
from unet.preprocessing.plan import Plan
from unet.runtime import machine_info


@dataclass
class TimedPredictor:
    """Wraps a predictor and records the wall time of each call (seconds) and its batch size."""

    predictor: Predictor
    seconds: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        probs = self.predictor(batch)
        self.seconds.append(time.perf_counter() - start)
        self.batch_sizes.append(len(batch))
        return probs


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"mean": float(ms.mean()), "p90": float(np.percentile(ms, 90)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99))}


def patch_benchmark(predictor: Predictor, patch_size: Sequence[int], num_channels: int,
                    batch_sizes: Sequence[int] = (1, 2), warmup: int = 10, steps: int = 100,
                    seed: int = 0) -> list[dict]:
    """Per batch size: `warmup` untimed calls on random patches, then `steps` timed ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch_size in batch_sizes:
        batch = rng.standard_normal((batch_size, *patch_size, num_channels)).astype(np.float32)
        for _ in range(warmup):
            predictor(batch)
        timed = TimedPredictor(predictor)
        for _ in range(steps):
            timed(batch)
        rows.append(_patch_row(timed, patch_size, warmup))
    return rows


def _patch_row(timed: TimedPredictor, patch_size: Sequence[int], warmup: int) -> dict:
    """Throughput and latency of the calls `timed` recorded (all of one batch size)."""
    return {"batch_size": int(timed.batch_sizes[0]), "resolution": "x".join(str(p) for p in patch_size),
            "throughput_img_s": float(np.sum(timed.batch_sizes)) / float(np.sum(timed.seconds)),
            "latency_ms": latency_ms(timed.seconds), "steps": len(timed.seconds), "warmup": warmup}


def runtime_benchmark(predictors: Mapping[str, Predictor], patch_size: Sequence[int], num_channels: int,
                      batch_sizes: Sequence[int] = (1, 2), warmup: int = 10, steps: int = 100,
                      seed: int = 0, rounds: int = 5) -> list[dict]:
    """The patch benchmark of several runtimes (name -> predictor; the first is the reference,
    normally "keras") on the same random batch per batch size: `warmup` untimed calls each, then
    `steps` timed calls each, taken in `rounds` turns (runtime after runtime, steps / rounds calls
    a turn), so that a load that comes and goes on a shared machine weighs on all of them alike.
    Each row adds `runtime`, `speedup` (throughput over the reference's at that batch size) and
    `max_abs_diff` (of its probabilities from the reference's on the batch)."""
    rows = []
    per_round = [steps // rounds + (i < steps % rounds) for i in range(rounds)]
    for batch_size in batch_sizes:
        batch = np.random.default_rng(seed).standard_normal((batch_size, *patch_size, num_channels)).astype(np.float32)
        for predictor in predictors.values():
            for _ in range(warmup):
                predictor(batch)
        timed = {name: TimedPredictor(predictor) for name, predictor in predictors.items()}
        for calls in per_round:
            for predictor in timed.values():
                for _ in range(calls):
                    predictor(batch)
        measured = {name: _patch_row(t, patch_size, warmup) for name, t in timed.items()}
        probs = {name: np.asarray(predictor(batch), dtype=np.float32) for name, predictor in predictors.items()}
        reference = next(iter(predictors))
        rows += [{"runtime": name, **row,
                  "speedup": row["throughput_img_s"] / measured[reference]["throughput_img_s"],
                  "max_abs_diff": float(np.max(np.abs(probs[name] - probs[reference])))}
                 for name, row in measured.items()]
    return rows


def whole_case_benchmark(predictor: Predictor, inputs: Iterable[CaseInput], patch_size: Sequence[int],
                         num_channels: int, settings: PredictSettings) -> dict:
    """Sliding-window time per case against the sum of the predictor's times on its windows.

    Every batch shape the sliding window can send (1..batch_size windows) is run once first, so
    one-off costs such as graph tracing are not counted. `restore_s` (back to the raw grid:
    resampling, argmax, pasting) is reported apart and is not part of the ratio.
    """
    for n in range(1, settings.batch_size + 1):
        predictor(np.zeros((n, *patch_size, num_channels), dtype=np.float32))
    cases = []
    for cid, image, geometry in inputs:
        timed = TimedPredictor(predictor)
        start = time.perf_counter()
        probs = predict_case(timed, image, patch_size, settings)
        whole = time.perf_counter() - start
        start = time.perf_counter()
        labels_from_cropped(probabilities_to_cropped(probs, geometry), geometry, range(probs.shape[-1]))
        restore = time.perf_counter() - start
        forward = float(np.sum(timed.seconds))
        cases.append({"case": cid, "shape": list(image.shape[:3]), "windows": int(np.sum(timed.batch_sizes)),
                      "calls": len(timed.seconds), "whole_s": whole, "forward_s": forward,
                      "stitching_s": whole - forward, "ratio": whole / forward, "restore_s": restore})
    if not cases:
        raise ValueError("whole_case_benchmark: no cases to predict")
    whole = sum(c["whole_s"] for c in cases)
    forward = sum(c["forward_s"] for c in cases)
    return {"cases": cases, "whole_s": whole, "forward_s": forward, "ratio": whole / forward,
            "max_case_ratio": max(c["ratio"] for c in cases), "settings": asdict(settings)}


def environment(threads: int | None = None) -> dict:
    """What the numbers were measured on: the machine (`unet.runtime.machine_info`: CPU, vector
    extensions, threads, oneDNN) and the runtimes' versions."""
    import keras

    info = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": threads, "keras": keras.__version__,
            "backend": keras.backend.backend(), **machine_info(threads or os.cpu_count() or 1)}
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    if "onnx" in available_runtimes():
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def benchmark_runtimes(model: str | Path, patch_size: Sequence[int], num_channels: int,
                       real: np.ndarray | None = None, runtimes: Sequence[str] | None = None,
                       batch_sizes: Sequence[int] = (1, 2), warmup: int = 10, steps: int = 100,
                       threads: int | None = None) -> dict:
    """`runtime_benchmark` of the `.keras` `model` against its exports to `runtimes` (default: every
    runtime of `available_runtimes()`), written to a temporary folder and checked at export (on a
    random patch and the centre of `real`, a preprocessed image): {"rows", "exports" (each
    export's check), "unavailable" (runtime -> how to install it)}."""
    runtimes = available_runtimes() if runtimes is None else list(runtimes)
    with tempfile.TemporaryDirectory(prefix="unet-runtimes-") as folder:
        checks = export_runtimes(model, folder, [r for r in runtimes if r != "keras"],
                                 validation_patches(patch_size, num_channels, real))
        predictors = {"keras": load_runtime(model, "keras", threads),
                      **{c.runtime: load_runtime(c.path, c.runtime, threads) for c in checks}}
        rows = runtime_benchmark(predictors, patch_size, num_channels, batch_sizes, warmup, steps)
    return {"rows": rows, "exports": [c.as_dict() for c in checks],
            "unavailable": {r: ONNX_INSTALL for r in RUNTIMES if r not in available_runtimes()}}


def benchmark_predict(predictor: Predictor, patch_size: Sequence[int], num_channels: int,
                      inputs: Iterable[CaseInput], settings: PredictSettings,
                      batch_sizes: Sequence[int] = (1, 2), warmup: int = 10, steps: int = 100,
                      threads: int | None = None) -> dict:
    """Both benchmarks: {"environment", "patches": [...], "whole_case": {...}}."""
    patches = patch_benchmark(predictor, patch_size, num_channels, batch_sizes, warmup, steps)
    whole = whole_case_benchmark(predictor, inputs, patch_size, num_channels, settings)
    return {"environment": environment(threads), "patches": patches, "whole_case": whole}


def format_tables(result: dict) -> str:
    """Markdown tables of a `benchmark_predict` result."""
    lines = ["| Dimension | Batch size | Resolution | Throughput Avg [img/s] | Latency Avg [ms] | "
             "Latency 90% [ms] | Latency 95% [ms] | Latency 99% [ms] |",
             "|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|"]
    for row in result["patches"]:
        lat = row["latency_ms"]
        lines.append(f"| {row['resolution'].count('x') + 1} | {row['batch_size']} | {row['resolution']} | "
                     f"{row['throughput_img_s']:.2f} | {lat['mean']:.2f} | {lat['p90']:.2f} | "
                     f"{lat['p95']:.2f} | {lat['p99']:.2f} |")
    whole = result["whole_case"]
    settings = whole["settings"]
    lines += ["", f"Whole cases (overlap {settings['overlap']}, {settings['blend']}, batch "
                  f"{settings['batch_size']}, tta {settings['tta']}):", "",
              "| Case | Shape | Windows | Whole [s] | Forward sum [s] | Ratio | Restore [s] |",
              "|:--|:-:|:-:|:-:|:-:|:-:|:-:|"]
    for c in whole["cases"]:
        lines.append(f"| {c['case']} | {'x'.join(map(str, c['shape']))} | {c['windows']} | "
                     f"{c['whole_s']:.3f} | {c['forward_s']:.3f} | {c['ratio']:.3f} | {c['restore_s']:.3f} |")
    lines.append(f"| all | | {sum(c['windows'] for c in whole['cases'])} | {whole['whole_s']:.3f} | "
                 f"{whole['forward_s']:.3f} | {whole['ratio']:.3f} | "
                 f"{sum(c['restore_s'] for c in whole['cases']):.3f} |")
    if "runtimes" in result:
        lines += ["", format_runtime_table(result["runtimes"])]
    return "\n".join(lines)


def format_runtime_table(runtimes: dict) -> str:
    """Markdown table of a `benchmark_runtimes` result: the runtimes side by side per batch size."""
    lines = ["Runtimes (the network alone, same patches; speed-up and max abs difference of probabilities "
             "against Keras):", "",
             "| Runtime | Batch size | Resolution | Throughput [patches/s] | Latency Avg [ms] | "
             "Latency 99% [ms] | Speed-up | Max abs diff |",
             "|:--|:-:|:-:|:-:|:-:|:-:|:-:|:-:|"]
    for row in runtimes["rows"]:
        lat = row["latency_ms"]
        lines.append(f"| {row['runtime']} | {row['batch_size']} | {row['resolution']} | "
                     f"{row['throughput_img_s']:.2f} | {lat['mean']:.2f} | {lat['p99']:.2f} | "
                     f"{row['speedup']:.2f} | {row['max_abs_diff']:.1e} |")
    for runtime, how in runtimes["unavailable"].items():
        lines.append(f"\n{runtime}: not measured, not installed; {how}")
    return "\n".join(lines)


def run_benchmark(model: str | Path, splits: str | Path, fold: int, preprocessed_dir: str | Path,
                  out: str | Path, *, plans: str | Path, section: dict, batch_sizes: Sequence[int] = (1, 2),
                  warmup: int = 10, steps: int = 100, threads: int | None = None,
                  runtimes: Sequence[str] | None = None) -> str:
    """Rule `benchmark_predict`: `benchmark_predict` of fold `fold`'s `model` on the fold's
    validation cases (from the preprocess stage's files), with config `predict` (`section`) and
    the plan `plans`, and `benchmark_runtimes` of the model (default: every runtime installed),
    checked on the first validation case; the result, with the model and fold, written to `out`
    (JSON) and its tables printed. Returns what to tell the user: the tables and where they are."""
    plan = Plan.load(plans)
    settings = PredictSettings.from_config(section)
    cases = load_fold(splits, fold)["val"]
    predictor = ensemble_predictor(load_models([model]), settings.tta)
    result = benchmark_predict(predictor, plan.patch_size, plan.num_channels,
                               preprocessed_inputs(preprocessed_dir, cases), settings,
                               batch_sizes=batch_sizes, warmup=warmup, steps=steps, threads=threads)
    real = load_npy(Path(preprocessed_dir) / f"{cases[0]}.npy") if cases else None
    result["runtimes"] = benchmark_runtimes(model, plan.patch_size, plan.num_channels, real, runtimes,
                                            batch_sizes, warmup, steps, threads)
    result = {"model": str(model), "fold": fold, **result}
    write_json(out, result)
    tables = format_tables(result)
    print(tables)
    return f"benchmark_predict (fold {fold}, model {model}):\n{tables}\nwritten to {out}"
