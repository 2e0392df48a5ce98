"""Exporting a trained Keras network to the other runtimes, each export checked against Keras.

`export_runtime` writes one runtime's export of a `.keras` model (a TensorFlow SavedModel folder
with a `serving_default` signature, as TF Serving wants it, or an ONNX file converted by tf2onnx),
loads it back through `unet.inference.runtimes.load_runtime`, and compares its probabilities with
the Keras model's on validation patches (`validation_patches`: a random batch and, when the caller
has one, a patch of a real preprocessed image). Above the tolerance it raises `ExportMismatch` and
writes nothing; otherwise the export is renamed into place and the differences are returned.

Both exports take a float32 batch (B, *spatial, C) named "image", with every axis but the channels
open, and return float32 probabilities (B, *spatial, K) named "probabilities". A network trained
with mixed precision is exported in float32 (its weights are float32 anyway; a bfloat16 or float16
graph would not run on every ONNX runtime), and checked against the float32 Keras network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from unet.inference.runtimes import (INPUT_NAME, OUTPUT_NAME, check_runtime, load_runtime, require,
                                     runtime_path)
from unet.io.atomic import atomic_dir, atomic_path

# ONNX opset of the conversion: 3D Conv and ConvTranspose exist in every opset; 17 is the newest that
# tf2onnx 1.17 prefers least to emulate and that TensorRT 8.6+, OpenVINO and onnxruntime >= 1.13 run.
ONNX_OPSET = 17
# Largest max abs difference of probabilities accepted between an export and the Keras model. The
# goal for float32 is < 1e-4; what we measure on the demo network is about 1e-6.
DEFAULT_TOLERANCE = 1e-4


class ExportMismatch(ValueError):
    """An export whose probabilities differ from the Keras model's by more than the tolerance."""


@dataclass(frozen=True)
class ExportCheck:
    """How an export compares with the Keras network: max abs difference of probabilities per
    validation patch (e.g. {"random": 1.2e-6, "real": 8e-7})."""

    runtime: str
    path: str
    max_abs_diff: dict[str, float]
    tolerance: float

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    def summary(self) -> str:
        diffs = ", ".join(f"{name} {d:.2e}" for name, d in self.max_abs_diff.items())
        return (f"{self.runtime} -> {self.path}: max abs difference of probabilities vs Keras: {diffs} "
                f"(tolerance {self.tolerance:.0e})")

    def as_dict(self) -> dict:
        return {"runtime": self.runtime, "path": self.path, "max_abs_diff": dict(self.max_abs_diff),
                "tolerance": self.tolerance}


def central_patch(image: np.ndarray, patch_size: Sequence[int]) -> np.ndarray:
    """The patch at the centre of a preprocessed image (*spatial, C) as a batch of one
    (1, *patch_size, C), zero-padded (evenly, as the sliding window pads) where the image is smaller."""
    image = np.asarray(image, dtype=np.float32)
    spatial = image.shape[:len(patch_size)]
    if image.ndim != len(patch_size) + 1:
        raise ValueError(f"expected an image (*spatial, C) with {len(patch_size)} spatial axes, got shape {image.shape}")
    pad = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(spatial, patch_size)]
    image = np.pad(image, pad + [(0, 0)])
    starts = [(s - p) // 2 for s, p in zip(image.shape, patch_size)]
    return image[tuple(slice(o, o + p) for o, p in zip(starts, patch_size))][None].copy()


def validation_patches(patch_size: Sequence[int], num_channels: int, real: np.ndarray | None = None,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """{"random": a batch of two standard-normal patches, "real": `central_patch` of `real`} (the
    second only with `real`, a preprocessed image (*spatial, C), e.g. from `preprocessed/{case}.npy`).
    A cascade's network takes more channels than the preprocessed image holds: the real patch's
    previous stage channels are then all background (zeros)."""
    rng = np.random.default_rng(seed)
    patches = {"random": rng.standard_normal((2, *patch_size, num_channels)).astype(np.float32)}
    if real is not None:
        patch = central_patch(real, patch_size)
        missing = num_channels - patch.shape[-1]
        patches["real"] = np.pad(patch, [(0, 0)] * (patch.ndim - 1) + [(0, missing)]) if missing > 0 else patch
    return patches


def float32_model(model):
    """`model` itself when every layer computes in float32; else a float32 copy with its weights
    (a network trained with mixed precision)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if "dtype" in layer.get("config", {}):
            layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _load_keras(model):
    if isinstance(model, (str, Path)):
        from unet.model.saved import load_model

        return load_model(model)
    return model


def _input_spec(model):
    import tensorflow as tf

    shape = model.inputs[0].shape
    return tf.TensorSpec((None,) * (len(shape) - 1) + (int(shape[-1]),), tf.float32, name=INPUT_NAME)


def export_saved_model(model, path: str | Path) -> None:
    """Write `model` (Keras) as a SavedModel folder at `path` (the folder must be new or empty), with
    one endpoint, `serve`, also its `serving_default` signature: {"image"} -> {"probabilities"}."""
    import keras

    model = float32_model(_load_keras(model))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda image: {OUTPUT_NAME: model(image, training=False)},
                         input_signature=[_input_spec(model)])
    archive.write_out(str(path), verbose=False)


def export_onnx(model, path: str | Path, opset: int = ONNX_OPSET) -> None:
    """Write `model` (Keras) as an ONNX file at `path`: tf2onnx converts the network's TensorFlow
    graph in this process (no SavedModel on disk in between). Needs the `onnx` extra."""
    import tensorflow as tf

    tf2onnx = require("tf2onnx", "exporting to ONNX")
    onnx = require("onnx", "exporting to ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)  # its per-op INFO lines say nothing to users
    model = float32_model(_load_keras(model))
    function = tf.function(lambda image: model(image, training=False))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=(_input_spec(model),), opset=opset)
    _rename_output(proto.graph, OUTPUT_NAME)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _rename_output(graph, name: str) -> None:
    """Give the graph's single output `name` (tf2onnx names it after the TensorFlow tensor)."""
    [output] = graph.output
    old = output.name
    for node in graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    output.name = name


def compare(reference, predictor, patches: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference of probabilities between two predictors (callables or Keras models)
    per patch batch."""
    run = getattr(reference, "predict_on_batch", reference)
    return {name: float(np.max(np.abs(np.asarray(run(batch), np.float32) - predictor(batch))))
            for name, batch in patches.items()}


def export_runtime(model, runtime: str, path: str | Path, patches: Mapping[str, np.ndarray],
                   tolerance: float = DEFAULT_TOLERANCE, opset: int = ONNX_OPSET) -> ExportCheck:
    """Export `model` (a Keras model or the path of a `.keras` file) for `runtime` ("keras",
    "saved_model", "onnx") to `path`, checked on `patches` (name -> batch (B, *patch, C), see
    `validation_patches`) against the Keras model. Raises `ExportMismatch` (and writes nothing)
    when a patch's max abs difference of probabilities exceeds `tolerance`."""
    check_runtime(runtime)
    if not patches:
        raise ValueError("export_runtime: no validation patches")
    source = model if isinstance(model, (str, Path)) else getattr(model, "name", "model")
    model = _load_keras(model)
    if runtime != "keras":  # the Keras file stays as trained; the others are float32 (module doc)
        model = float32_model(model)
    path = Path(path)
    if runtime == "saved_model":
        with atomic_dir(path) as tmp:
            export_saved_model(model, tmp)
            diffs = _checked(model, tmp, runtime, patches, tolerance, source, path)
    else:
        with atomic_path(path, suffix=".keras" if runtime == "keras" else ".onnx") as tmp:
            if runtime == "keras":
                model.save(tmp)
            else:
                export_onnx(model, tmp, opset)
            diffs = _checked(model, tmp, runtime, patches, tolerance, source, path)
    return ExportCheck(runtime, str(path), diffs, tolerance)


def _checked(model, written: Path, runtime: str, patches, tolerance: float, source, path: Path) -> dict[str, float]:
    diffs = compare(model, load_runtime(written, runtime), patches)
    failed = {name: d for name, d in diffs.items() if not d <= tolerance}  # NaN fails too
    if failed:
        raise ExportMismatch(
            f"{runtime} export of {source} to {path}: max abs difference of probabilities from the Keras model "
            + ", ".join(f"{d:.3g} on the {name} patch" for name, d in failed.items())
            + f" exceeds the tolerance {tolerance:g}; the export was not written")
    return diffs


def export_runtimes(model, folder: str | Path, runtimes: Sequence[str], patches: Mapping[str, np.ndarray],
                    tolerance: float = DEFAULT_TOLERANCE, opset: int = ONNX_OPSET) -> list[ExportCheck]:
    """`export_runtime` for each of `runtimes`, to its name in `folder` (`runtimes.RUNTIME_FILES`)."""
    model = _load_keras(model)
    return [export_runtime(model, r, runtime_path(folder, r), patches, tolerance, opset)
            for r in dict.fromkeys(runtimes)]
