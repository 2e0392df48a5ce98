"""Reading a model archive (`unet.inference.archive`) safely: a zip extracted member by member
into a temporary folder, each name checked first (relative, no `..`, no links) and each member's
size and SHA-256 compared with the manifest as it is written; an unpacked archive verified in
place. A missing, extra or altered member stops with an InputError naming it, before anything is
loaded. No TensorFlow here.
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
from pathlib import Path, PurePosixPath
from typing import Mapping

from unet.data.splits import parse_fold
from unet.inference.errors import InputError
from unet.inference.model_info import CHECKPOINTS, file_sha256

FORMAT, VERSION = "unet-model-archive", 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


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


def open_archive(path: str | os.PathLike, stack: contextlib.ExitStack) -> tuple[Path, dict] | None:
    """(folder, manifest) of the archive at `path`, a zip (extracted into a temporary folder that
    `stack` removes) or the folder it unpacked to (verified in place); None when `path` is neither
    (a results folder)."""
    path = Path(path)
    if path.is_file():
        into = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unet-model-")))
        return into, extract_archive(path, into)
    if not (path / MANIFEST).is_file():
        return None
    try:
        manifest = _check_manifest(json.loads((path / MANIFEST).read_text()), path)
    except ValueError as exc:
        raise InputError(f"{path / MANIFEST}: unreadable ({exc})") from exc
    verify_folder(path, manifest)
    return path, manifest
