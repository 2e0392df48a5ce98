"""The model archive: one configuration's fold networks and everything predicting needs, in one
checksummed zip.

`python -m unet export` (and the workflow's rule `export`) writes it; `python -m unet predict -m`
reads it, the folder it unpacks to, or a run's results folder, all through
`unet.inference.model_folder.open_model_folder`:

    manifest.json            {"format": "unet-model-archive", "version": 1, "package_version",
                              "checkpoint": "final" | "best", "folds": [k, ...], "formats": ["keras"],
                              "configuration", "channels", "labels", "regions" (copies of
                              plans.json and model.json for readers, checked against them on load),
                              "members": {path: {"sha256", "bytes"}} for every other file}
    plans.json               the run's plan, byte for byte (labels, channels, preprocessing)
    config.json              the workflow's config, when the export was given one
    postprocessing.json      the configuration's postprocessing (unet.inference.postprocess), when
                             it has one
    fold_{k}/model.json      as the train stage wrote it (regions, plan checksum, train settings)
    fold_{k}/model.keras     the network (model_best.keras when exported with checkpoint best)
    fold_{k}/formats/        the same network in the other formats listed in `formats`, where
                             `unet.inference.runtimes.runtime_path(formats, name)` finds them
                             (saved_model/, model.onnx), written and checked against Keras at export

The layout is an older results folder's (plans.json beside the folds), which a run's
`{configuration}/` folder and the shared plans.json above it become. Reading it back, checksums
first, is `unet.inference.unpack`'s job. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

import unet
from unet.data.splits import Fold
from unet.inference.errors import InputError
from unet.inference.model_folder import ModelFolder, open_model_folder
from unet.inference.model_info import MODEL_INFO, fold_of
from unet.inference.runtimes import runtime_path
from unet.inference.unpack import FORMAT, MANIFEST, VERSION
from unet.io.atomic import atomic_path

FORMATS = ("keras",)   # always there: the network itself
RUNTIME_FORMATS = ("saved_model", "onnx")   # exported by unet.inference.runtime_export
# Writes one format of the Keras model at the first path into the fold's formats folder (second).
Exporter = Callable[[Path, Path], None]
POSTPROCESSING = "postprocessing.json"
_DATE = (1980, 1, 1, 0, 0, 0)   # fixed member dates: the same models give the same archive
_CHUNK = 1 << 20


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def runtime_exporter(name: str, folder: Path, plan) -> Exporter:
    """`unet.inference.runtime_export.export_runtime` for format `name`, checked against Keras on
    a random patch and, for a results folder that has one, the centre of a preprocessed image."""
    from unet.inference.runtime_export import export_runtime, validation_patches
    from unet.inference.runtimes import ONNX_INSTALL, onnx_available, runtime_path
    from unet.io.atomic import load_npy

    if name == "onnx" and not onnx_available():
        raise InputError(f"format onnx: the ONNX packages are missing; {ONNX_INSTALL}")

    images = sorted(p for p in (folder / "preprocessed").glob("*.npy") if not p.name.endswith(("_seg.npy", "_fg.npy")))
    real = load_npy(images[0], mmap=True) if images else None
    if real is not None and plan.slice_axis is not None:  # a 2d network: the middle slice
        real = np.take(real, real.shape[plan.slice_axis] // 2, axis=plan.slice_axis)
    patches = validation_patches(plan.patch_size, plan.input_channels, real=real)

    def export(model: Path, formats: Path) -> None:
        print(export_runtime(model, name, runtime_path(formats, name), patches).summary(), flush=True)

    return export


def export_archive(model_dir: str | os.PathLike, out: str | os.PathLike, *, folds: Sequence[Fold] | None = None,
                   checkpoint: str | None = None, config: Mapping | None = None,
                   formats: Sequence[str] = FORMATS, exporters: Mapping[str, Exporter] | None = None,
                   configuration: str | None = None) -> Path:
    """Write the archive of `model_dir` (a run's results folder, a configuration's folder of it,
    or an archive) to `out`, atomically: the `configuration`'s (default: as `open_model_folder`
    chooses) `checkpoint` network ("final" by default) of `folds` (default: all), the shared
    plans.json, each fold's model.json, `config` (as config.json), the configuration's
    postprocessing, and each fold's network in the `formats` beyond Keras (`exporters[name]`;
    saved_model and onnx: `runtime_exporter`). An archive's own saved_model and onnx files are
    carried over when asked for again (checked against Keras when they were written, and by their
    checksums since), unless `exporters` names one."""
    exporters = dict(exporters or {})
    unknown = [f for f in formats if f not in (*FORMATS, *RUNTIME_FORMATS) and f not in exporters]
    if unknown:
        raise InputError(f"format {', '.join(unknown)}: no exporter for it (available: "
                         f"{', '.join(dict.fromkeys([*FORMATS, *RUNTIME_FORMATS, *exporters]))})")
    with contextlib.ExitStack() as stack:
        source = open_model_folder(model_dir, stack, checkpoint, configuration)
        models = source.model_set(folds)
        if source.chosen:
            print(f"configuration {source.configuration} ({source.chosen}): {source.folder}", flush=True)
        extra = [f for f in dict.fromkeys(formats) if f not in FORMATS]
        carried = [f for f in extra if f in RUNTIME_FORMATS and f not in exporters and source.manifest is not None
                   and f in source.manifest.get("formats", ())]
        fresh = [f for f in extra if f not in carried]
        for name in fresh:
            exporters.setdefault(name, runtime_exporter(name, source.plans.parent, models.plan))
        for name in carried:
            print(f"{name}: carried over from {model_dir} (checked against Keras when it was exported)", flush=True)
        if config is None and (source.folder / "config.json").is_file():
            config = json.loads((source.folder / "config.json").read_text())
        members = {"plans.json": models.plans}
        if (source.folder / POSTPROCESSING).is_file():
            members[POSTPROCESSING] = source.folder / POSTPROCESSING
        if config is not None:
            staged = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unet-export-")))
            (staged / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
            members["config.json"] = staged / "config.json"
        for model in models.models:
            fold = model.parent.name
            members[f"{fold}/{MODEL_INFO}"] = model.parent / MODEL_INFO
            members[f"{fold}/{model.name}"] = model
            for name in carried:
                members.update(_format_members(source, model.parent, name))
            if fresh:
                target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unet-formats-")))
                for name in fresh:
                    exporters[name](model, target)
                members.update({f"{fold}/formats/{p.relative_to(target).as_posix()}": p for p in _files(target)})
        summary = {"format": FORMAT, "version": VERSION, "package_version": unet.__version__,
                   "checkpoint": source.checkpoint, "folds": [fold_of(m) for m in models.models],
                   "formats": list(dict.fromkeys([*FORMATS, *formats])),
                   "configuration": models.plan.configuration, "channels": list(models.plan.modalities),
                   "labels": {str(k): v for k, v in sorted(models.plan.labels.items())},
                   "regions": models.regions}
        return _write_zip(out, summary, members)


def _format_members(source: ModelFolder, fold_dir: Path, name: str) -> dict[str, Path]:
    """{archive path: file} of format `name`'s export in the archive `source`'s `fold_dir`."""
    path = runtime_path(fold_dir / "formats", name)
    files = [path] if path.is_file() else _files(path) if path.is_dir() else []
    if not files:
        raise InputError(f"{source.source}: {MANIFEST} lists format {name}, but {fold_dir.name} has no "
                         f"{path.relative_to(fold_dir).as_posix()}; the archive is corrupted")
    return {f"{fold_dir.name}/{p.relative_to(fold_dir).as_posix()}": p for p in files}


def _write_zip(out: str | os.PathLike, summary: dict, members: Mapping[str, Path]) -> Path:
    """The zip of `members` ({archive path: file}) with the manifest (`summary` + checksums of what
    was written) last, written atomically."""
    listed = {}
    with atomic_path(out, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(members.items()):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            listed[name] = {"sha256": digest.hexdigest(), "bytes": size}
        manifest = zipfile.ZipInfo(MANIFEST, date_time=_DATE)
        manifest.external_attr, manifest.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
        archive.writestr(manifest, json.dumps({**summary, "members": listed}, indent=2) + "\n")
    return Path(out)
