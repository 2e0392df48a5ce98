"""The model archive: a run's fold networks and everything predicting needs, in one checksummed zip.

`python -m unet export` (and the workflow's rule `export`) writes it; `python -m unet predict -m`
reads it, the folder it unpacks to, or a run's results folder, all through `open_model_folder`:

    manifest.json            {"format": "unet-model-archive", "version": 1, "package_version",
                              "checkpoint": "final" | "best", "folds": [k, ...], "formats": ["keras"],
                              "configuration", "channels", "labels", "regions" (copies of
                              plans.json and model.json for readers, checked against them on load),
                              "members": {path: {"sha256", "bytes"}} for every other file}
    plans.json               the run's plan, byte for byte (labels, channels, preprocessing)
    config.json              the workflow's config, when the export was given one
    postprocessing.json      the run's postprocessing (unet.inference.postprocess), when it has one
    fold_{k}/model.json      as the train stage wrote it (regions, plan checksum, train settings)
    fold_{k}/model.keras     the network (model_best.keras when exported with checkpoint best)
    fold_{k}/formats/        the same network in the other formats listed in `formats`, where
                             `unet.inference.runtimes.runtime_path(formats, name)` finds them
                             (saved_model/, model.onnx), written and checked against Keras at export

The layout is a results folder's, so that a results folder, an unpacked archive and a zip open
the same way. A zip is extracted member by member into a temporary folder, each name checked
first (relative, no `..`, no links) and each member's size and SHA-256 compared with the manifest
as it is written; an unpacked archive is verified in place; nothing is loaded before every member
has passed. A missing, extra or altered member stops with an InputError naming it. No TensorFlow
here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Sequence

import unet
from unet.inference.errors import InputError
from unet.data.splits import Fold, parse_fold
from unet.inference.model_info import (CHECKPOINTS, MODEL_INFO, ModelSet, file_sha256, fold_of, load_model_set,
                                       model_paths)
from unet.inference.runtimes import runtime_path
from unet.io.atomic import atomic_path

FORMAT, VERSION = "unet-model-archive", 1
MANIFEST = "manifest.json"
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
    patches = validation_patches(plan.patch_size, plan.num_channels,
                                 real=load_npy(images[0], mmap=True) if images else None)

    def export(model: Path, formats: Path) -> None:
        print(export_runtime(model, name, runtime_path(formats, name), patches).summary(), flush=True)

    return export


def export_archive(model_dir: str | os.PathLike, out: str | os.PathLike, *, folds: Sequence[Fold] | None = None,
                   checkpoint: str | None = None, config: Mapping | None = None,
                   formats: Sequence[str] = FORMATS, exporters: Mapping[str, Exporter] | None = None) -> Path:
    """Write the archive of `model_dir` (a results folder or an archive) to `out`, atomically: the
    `checkpoint` network ("final" by default) of `folds` (default: all), plans.json, each fold's
    model.json, `config` (as config.json), the postprocessing, and each fold's network in the
    `formats` beyond Keras (`exporters[name]`; saved_model and onnx: `runtime_exporter`). An
    archive's own saved_model and onnx files are carried over when asked for again (checked against
    Keras when they were written, and by their checksums since), unless `exporters` names one."""
    exporters = dict(exporters or {})
    unknown = [f for f in formats if f not in (*FORMATS, *RUNTIME_FORMATS) and f not in exporters]
    if unknown:
        raise InputError(f"format {', '.join(unknown)}: no exporter for it (available: "
                         f"{', '.join(dict.fromkeys([*FORMATS, *RUNTIME_FORMATS, *exporters]))})")
    with contextlib.ExitStack() as stack:
        source = open_model_folder(model_dir, stack, checkpoint)
        models = source.model_set(folds)
        extra = [f for f in dict.fromkeys(formats) if f not in FORMATS]
        carried = [f for f in extra if f in RUNTIME_FORMATS and f not in exporters and source.manifest is not None
                   and f in source.manifest.get("formats", ())]
        fresh = [f for f in extra if f not in carried]
        for name in fresh:
            exporters.setdefault(name, runtime_exporter(name, source.folder, models.plan))
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


def _format_members(source: "ModelFolder", fold_dir: Path, name: str) -> dict[str, Path]:
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


# -- Reading ----------------------------------------------------------------------------------------

def _member_path(name: str, where: Path) -> PurePosixPath:
    """`name` as a relative path that stays inside the folder it is extracted to."""
    path = PurePosixPath(name)
    if (not name or "\\" in name or path.is_absolute() or ":" in path.parts[0]
            or any(part in ("", ".", "..") for part in name.rstrip("/").split("/"))):
        raise InputError(f"{where}: member {name!r} would land outside the folder it is unpacked to; "
                         f"refusing the archive")
    return path


def _check_manifest(manifest, where: Path) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{where}: {MANIFEST} is not a model archive's manifest (written by "
                         f"`python -m unet export`)")
    if int(manifest.get("version", 0)) > VERSION:
        raise InputError(f"{where}: archive version {manifest['version']} is newer than this package "
                         f"reads ({VERSION}); update unet")
    members = manifest.get("members")
    if (manifest.get("checkpoint") not in CHECKPOINTS or not isinstance(manifest.get("folds"), list)
            or not isinstance(members, dict)
            or not all(isinstance(m, dict) and {"sha256", "bytes"} <= set(m) for m in members.values())):
        raise InputError(f"{where}: {MANIFEST} lacks its checkpoint, folds or member checksums; the archive "
                         f"is corrupted")
    for name in members:
        _member_path(name, where)
    try:
        [parse_fold(k) for k in manifest["folds"]]
    except ValueError as exc:
        raise InputError(f"{where}: {MANIFEST} lists {exc}; the archive is corrupted") from None
    return manifest


def _read_manifest(archive: zipfile.ZipFile, where: Path) -> dict:
    try:
        return _check_manifest(json.loads(archive.read(MANIFEST)), where)
    except KeyError:
        raise InputError(f"{where}: member {MANIFEST} missing: not a model archive written by "
                         f"`python -m unet export`") from None
    except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{where}: member {MANIFEST} is unreadable ({exc})") from exc


def extract_archive(path: str | os.PathLike, into: str | os.PathLike) -> dict:
    """Unpack the archive at `path` into the folder `into`, member by member, each checked against
    the manifest before the next; return the manifest. Raises InputError naming the member that is
    missing, unexpected, a link, outside `into`, or whose size or checksum differs."""
    path, into = Path(path), Path(into)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a model archive (a zip written by `python -m unet export`): {exc}") from exc
    with archive:
        manifest = _read_manifest(archive, path)
        members = manifest["members"]
        seen = set()
        for info in archive.infolist():
            name = info.filename
            _member_path(name, path)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(f"{path}: member {name} is a symbolic link; refusing the archive")
            if name.endswith("/") or name == MANIFEST:
                continue
            if name not in members:
                raise InputError(f"{path}: member {name} is not in the manifest; refusing the archive")
            if name in seen:
                raise InputError(f"{path}: member {name} appears twice; refusing the archive")
            seen.add(name)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    _copy_checked(src, dst, members[name], f"{path}: member {name}")
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # CRC, deflate stream, truncation
                raise InputError(f"{path}: member {name} is corrupted ({exc})") from exc
        missing = sorted(set(members) - seen)
        if missing:
            raise InputError(f"{path}: member {', '.join(missing)} missing (listed in {MANIFEST})")
    return manifest


def _copy_checked(src, dst, expected: Mapping, where: str) -> None:
    digest, size, limit = hashlib.sha256(), 0, int(expected["bytes"])
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        size += len(chunk)
        if size > limit:
            raise InputError(f"{where}: larger than the {limit} bytes {MANIFEST} lists; the archive is corrupted")
        digest.update(chunk)
        dst.write(chunk)
    if size != limit or digest.hexdigest() != expected["sha256"]:
        raise InputError(f"{where}: checksum mismatch (SHA-256 or size differs from {MANIFEST}); "
                         f"the archive is corrupted")


def verify_folder(folder: str | os.PathLike, manifest: dict) -> None:
    """Check an unpacked archive in place: every member present, a regular file inside `folder`,
    with the manifest's size and SHA-256."""
    folder = Path(folder)
    root = folder.resolve()
    for name, expected in manifest["members"].items():
        path = folder / _member_path(name, folder)
        if not path.is_file() or path.is_symlink():
            raise InputError(f"{folder}: member {name} missing (listed in {MANIFEST})")
        if not path.resolve().is_relative_to(root):
            raise InputError(f"{folder}: member {name} lies outside the folder; refusing it")
        if path.stat().st_size != int(expected["bytes"]) or file_sha256(path) != expected["sha256"]:
            raise InputError(f"{folder}: member {name}: checksum mismatch (SHA-256 or size differs from "
                             f"{MANIFEST}); the archive is corrupted")


@dataclass(frozen=True)
class ModelFolder:
    """A folder in the results layout, ready to predict from: a run's results folder, or an
    archive, unpacked (a zip into a temporary folder) and verified."""
    source: Path            # what the user named
    folder: Path
    manifest: dict | None   # an archive's; None for a results folder
    checkpoint: str

    def model_set(self, folds: Sequence[Fold] | None = None) -> ModelSet:
        """The folds' networks (default: all), checked against the plan, each other and the manifest."""
        if self.manifest is not None:
            listed = [parse_fold(k) for k in self.manifest["folds"]]
            absent = [k for k in folds or () if k not in listed]
            if absent:
                raise InputError(f"{self.source}: no fold {', '.join(map(str, absent))} in the archive "
                                 f"(folds {', '.join(map(str, listed))}); choose other --folds")
            folds = folds or listed
        models = load_model_set(self.folder / "plans.json", model_paths(self.folder, folds, self.checkpoint))
        if self.manifest is not None:
            plan = models.plan
            found = {"configuration": plan.configuration, "channels": list(plan.modalities),
                     "regions": models.regions,
                     "labels": {str(k): v for k, v in sorted(plan.labels.items())}}
            for key, value in found.items():
                if self.manifest.get(key) != value:
                    raise InputError(f"{self.source}: {MANIFEST} says {key} {self.manifest.get(key)!r}, but the "
                                     f"models' files say {value!r}; the archive is corrupted")
        return models


def open_model_folder(path: str | os.PathLike, stack: contextlib.ExitStack,
                      checkpoint: str | None = None) -> ModelFolder:
    """The models at `path`: a results folder, an unpacked archive (it has a manifest.json) or a
    zip (extracted into a temporary folder that `stack` removes). `checkpoint`: "final" or "best";
    None means an archive's own, else "final"."""
    path = Path(path)
    if path.is_file():
        into = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unet-model-")))
        manifest = extract_archive(path, into)
        folder = into
    elif (path / MANIFEST).is_file():
        try:
            manifest = _check_manifest(json.loads((path / MANIFEST).read_text()), path)
        except ValueError as exc:
            raise InputError(f"{path / MANIFEST}: unreadable ({exc})") from exc
        verify_folder(path, manifest)
        folder = path
    else:
        return ModelFolder(path, path, None, checkpoint or "final")
    if checkpoint not in (None, manifest["checkpoint"]):
        raise InputError(f"{path}: the archive holds the {manifest['checkpoint']} checkpoint, not {checkpoint}; "
                         f"predict with --checkpoint {manifest['checkpoint']}, or export again with "
                         f"--checkpoint {checkpoint}")
    return ModelFolder(path, folder, manifest, manifest["checkpoint"])

