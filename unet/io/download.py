"""Download and unpack Medical Segmentation Decathlon (MSD) tasks.

Every step writes under a temporary name and renames on success, so an interrupted run
never leaves a tar or a dataset folder that looks finished:

    {data_dir}/{task}.tar.part  --(md5 ok)-->  {data_dir}/{task}.tar
    {data_dir}/.{task}.extracting.*/  --(dataset.json found)-->  {data_dir}/{task}/

Only the standard library and tqdm are used, so the `download` stage starts fast.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from tqdm import tqdm

_CHUNK_BYTES = 1 << 20
# Without a timeout a stalled connection would hang the job forever instead of failing.
_TIMEOUT_S = 60.0
_TASK_TABLE = "msd_tasks.tsv"


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or file and what to do."""


# --- task table ---------------------------------------------------------------------------------

def _read_task_table() -> dict[str, tuple[str, str]]:
    text = resources.files("unet.io").joinpath(_TASK_TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    return {row["task"]: (row["url"], row["md5"].lower()) for row in rows}


def known_tasks() -> list[str]:
    """Names of the MSD tasks the bundled table can download."""
    return sorted(_read_task_table())


def msd_task_source(task: str) -> tuple[str, str]:
    """(url, md5) of an MSD task's tar, from the table bundled with the package."""
    table = _read_task_table()
    if task not in table:
        raise DownloadError(
            f"unknown MSD task {task!r}; known tasks: {', '.join(sorted(table))}. "
            f"Check the spelling, or put your own dataset in MSD layout under data_dir "
            f"and set task to its folder name."
        )
    return table[task]


# --- download -----------------------------------------------------------------------------------

def _md5_digest() -> Any:  # hashlib's hash type is not public
    # usedforsecurity=False: MD5 is only an integrity check here; FIPS builds refuse it otherwise.
    return hashlib.md5(usedforsecurity=False)


def _file_md5(path: Path) -> str:
    digest = _md5_digest()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _open_url(url: str) -> http.client.HTTPResponse:
    try:
        return urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the open connection of the error response
        raise DownloadError(
            f"server answered HTTP {exc.code} {exc.reason} for {url}: check the URL "
            f"(or the task name) and rerun"
        ) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(
            f"could not start downloading {url} ({exc}): check your network and the URL, then rerun"
        ) from exc


def _content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (TypeError, ValueError):
        return None  # absent or malformed: the md5 check still catches a short file


def _interrupted(url: str, received: int, total: int | None, cause: str) -> DownloadError:
    of_total = f" of {total}" if total is not None else ""
    return DownloadError(
        f"transfer of {url} was interrupted after {received}{of_total} bytes ({cause}); "
        f"the partial file was removed: check your network and rerun"
    )


def _read_chunks(response: http.client.HTTPResponse, url: str,
                 total: int | None) -> Iterator[bytes]:
    """Yield the body; a dropped connection or a body shorter than Content-Length is an error."""
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _interrupted(url, received, total, str(exc) or type(exc).__name__) from exc
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    # http.client returns b"" when the server closes early, without raising: count ourselves.
    if total is not None and received < total:
        raise _interrupted(url, received, total, "connection closed early")


def _write_chunk(out: BinaryIO, chunk: bytes, part: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise DownloadError(
            f"could not write {part} ({exc}): check free disk space and permissions, then rerun"
        ) from exc


def _stream_to(url: str, part: Path, progress: bool) -> str:
    """Stream `url` into `part`; return the md5 computed on the way (no second pass over it)."""
    digest = _md5_digest()
    with _open_url(url) as response, open(part, "wb") as out:
        total = _content_length(response)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            for chunk in _read_chunks(response, url, total):
                _write_chunk(out, chunk, part)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, progress: bool = True) -> Path:
    """Download `url` to `dest`, verified against `md5`; skip if `dest` already matches it."""
    dest = Path(dest)
    expected = md5.lower()
    if dest.is_file() and _file_md5(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    try:
        actual = _stream_to(url, part, progress)
    except BaseException:
        # No resume support, so a partial file is useless; remove it even on Ctrl-C.
        part.unlink(missing_ok=True)
        raise
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected md5 {expected}, got {actual}; the download "
            f"was removed. Rerun to retry; if it persists, the file behind the URL changed: "
            f"check the URL and md5 in the task table"
        )
    os.replace(part, dest)
    return dest


# --- extraction ---------------------------------------------------------------------------------

def _is_junk(member_name: str) -> bool:
    """macOS resource forks (`._x`, `__MACOSX/`) look like NIfTI files by name but are not."""
    return any(p.startswith("._") or p == "__MACOSX" for p in PurePosixPath(member_name).parts)


def _extract_members(archive: Path, into: Path) -> None:
    if not hasattr(tarfile, "data_filter"):  # never fall back to an unfiltered extraction
        raise DownloadError(
            f"cannot extract {archive} safely: this Python lacks tarfile filters; use Python "
            f">= 3.10.12 or >= 3.11.4"
        )
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar if not _is_junk(m.name)]
            # filter="data" refuses members that would land outside `into` (`..`, links) and
            # strips absolute paths and special files.
            tar.extractall(into, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise DownloadError(
            f"refused to extract {archive}: {exc}. The archive is damaged or not trustworthy: "
            f"delete {archive} and check the URL before rerunning"
        ) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(
            f"could not extract {archive} ({exc}): check free disk space; if the archive is "
            f"damaged, delete {archive} and rerun"
        ) from exc


def _dataset_root(extracted: Path) -> Path:
    """MSD tars hold one folder named like the task; use it, else the archive's root."""
    entries = list(extracted.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return extracted


def _require_absent(dest_dir: Path, archive: Path) -> None:
    if dest_dir.is_dir() and not any(dest_dir.iterdir()):
        dest_dir.rmdir()  # an empty folder (e.g. made by a tool in advance) holds nothing to keep
    if dest_dir.exists():
        raise DownloadError(
            f"{dest_dir} already exists; delete it and rerun to extract {archive} again"
        )


def extract_tar(archive: Path, dest_dir: Path) -> None:
    """Extract an MSD tar so that `dest_dir/dataset.json` exists; all-or-nothing."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    _require_absent(dest_dir, archive)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    # Beside dest_dir, so the final rename stays on one filesystem and is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extracting.", dir=dest_dir.parent))
    try:
        _extract_members(archive, tmp)
        root = _dataset_root(tmp)
        if not (root / "dataset.json").is_file():
            raise DownloadError(
                f"{archive} has no dataset.json at its root or in its single top-level folder, "
                f"so it is not an MSD dataset: check the URL, delete {archive} and rerun"
            )
        os.replace(root, dest_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the download stage -------------------------------------------------------------------------

def download_msd_task(task: str, data_dir: Path, progress: bool = True,
                      source: tuple[str, str] | None = None) -> Path:
    """Download, verify and extract an MSD task to `data_dir/task/`; return that folder.

    `source` = (url, md5) overrides the bundled table (tests, mirrors).
    """
    data_dir = Path(data_dir)
    dataset_dir = data_dir / task
    if (dataset_dir / "dataset.json").is_file():
        return dataset_dir  # extraction is all-or-nothing, so this folder is complete
    url, md5 = source if source is not None else msd_task_source(task)
    archive = download_file(url, data_dir / f"{task}.tar", md5, progress=progress)
    extract_tar(archive, dataset_dir)
    # Kept until extraction succeeded: a rerun then skips the (verified) download.
    archive.unlink()
    return dataset_dir
