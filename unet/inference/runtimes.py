"""The runtimes a trained network predicts with: Keras (`.keras`), TensorFlow SavedModel (what TF
Serving and other TF-only consumers load) and ONNX (run by onnxruntime).

`load_runtime` turns any of them into a `Predictor`, the callable the sliding window and
`ensemble_predictor` take: a float32 channels-last batch (B, *patch, C) to float32 probabilities
(B, *patch, K). Every import happens inside the loaders, so reading this module is cheap and an
ONNX prediction never imports TensorFlow or Keras. The ONNX packages are an optional extra (pins
in envs/onnx.txt); without them the ONNX runtime stops with `RuntimeUnavailable`, which names
how to install them. The exports themselves are written by `unet.inference.runtime_export`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

RUNTIMES = ("keras", "saved_model", "onnx")
# The name each runtime's export has inside a model folder (`runtime_path`).
RUNTIME_FILES = {"keras": "model.keras", "saved_model": "saved_model", "onnx": "model.onnx"}
# The names of the exported network's input and output (SavedModel signature keys, ONNX names).
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SERVING_SIGNATURE = "serving_default"  # TF Serving's default signature key
ONNX_PACKAGES = ("onnxruntime", "onnx", "tf2onnx")
ONNX_INSTALL = ("install the optional `onnx` extra (pins in envs/onnx.txt): `make onnx-env` puts it "
                "into .venv, or `pip install -r envs/onnx.txt` into the environment you run")


class RuntimeUnavailable(ImportError):
    """A runtime whose packages are not installed: the message says how to install them."""


def require(module: str, purpose: str = "the ONNX runtime") -> object:
    """Import `module` (one of ONNX_PACKAGES), or raise `RuntimeUnavailable` saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeUnavailable(f"{purpose} needs the Python package `{module}`, which is not installed "
                                 f"here ({exc}); {ONNX_INSTALL}") from exc


def onnx_available() -> bool:
    """Whether the ONNX extra is installed (without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)
    except ValueError:  # a module set to None in sys.modules (blocked, as tests do)
        return False


def available_runtimes() -> list[str]:
    """The runtimes this environment can load and export: Keras and SavedModel always, ONNX with
    its extra."""
    return [r for r in RUNTIMES if r != "onnx" or onnx_available()]


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    return runtime


def runtime_path(folder: str | Path, runtime: str) -> Path:
    """Where `runtime`'s export lives in a model folder (`RUNTIME_FILES`)."""
    return Path(folder) / RUNTIME_FILES[check_runtime(runtime)]


@dataclass
class RuntimePredictor:
    """A loaded network: call it with a batch (B, *patch, C) to get probabilities (B, *patch, K).
    `num_outputs` is K; `runtime` and `path` say what was loaded."""

    runtime: str
    path: Path
    num_outputs: int
    run: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float32)


def load_runtime(path: str | Path, runtime: str = "keras", threads: int | None = None) -> RuntimePredictor:
    """The network at `path` (a `.keras` file, a SavedModel folder, a `.onnx` file) as a predictor.

    `threads` sizes onnxruntime's intra-op pool (None: its default, one per physical core); the
    TensorFlow runtimes take theirs from `unet.runtime.configure_tensorflow`, called before
    TensorFlow is imported.
    """
    path = Path(path)
    loader = {"keras": _load_keras, "saved_model": _load_saved_model, "onnx": _load_onnx}[check_runtime(runtime)]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {runtime} model here")
    return loader(path, threads)


def _load_keras(path: Path, threads: int | None) -> RuntimePredictor:
    from unet.model.saved import load_model

    model = load_model(path)
    return RuntimePredictor("keras", path, int(model.outputs[0].shape[-1]), model.predict_on_batch)


def _load_saved_model(path: Path, threads: int | None) -> RuntimePredictor:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if SERVING_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path}: SavedModel without a {SERVING_SIGNATURE!r} signature "
                         f"(has {sorted(loaded.signatures)}); export it with unet.inference.runtime_export")
    signature = loaded.signatures[SERVING_SIGNATURE]
    [input_name] = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else next(iter(outputs))

    def run(batch: np.ndarray, _owner=loaded) -> np.ndarray:  # _owner keeps the variables alive
        return signature(**{input_name: tf.constant(batch)})[output_name].numpy()

    return RuntimePredictor("saved_model", path, int(outputs[output_name].shape[-1]), run)


def _load_onnx(path: Path, threads: int | None) -> RuntimePredictor:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1  # a U-Net is one chain of ops: nothing to run side by side
    preferred = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), options, providers=preferred)
    [image] = session.get_inputs()
    output = session.get_outputs()[0]
    channels = output.shape[-1]
    if not isinstance(channels, int):
        raise ValueError(f"{path}: the ONNX model's output {output.name!r} has no fixed channel count "
                         f"(shape {output.shape}); export it with unet.inference.runtime_export")

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([output.name], {image.name: batch})[0]

    return RuntimePredictor("onnx", path, channels, run)
