"""Download and unpack Medical Segmentation Decathlon (MSD) tasks.

Every step writes under a temporary name and renames on success, so an interrupted run
never leaves a tar or a dataset folder that looks finished:

    {data_dir}/{task}.tar.part  --(md5 of the whole file ok)-->  {data_dir}/{task}.tar
    {data_dir}/.{task}.extracting.*/  --(dataset.json found)-->  {data_dir}/{task}/

The `.part` file survives an interruption (dropped connection, Ctrl-C, full disk): the next
call asks the server for the rest with an HTTP `Range: bytes=N-` request and appends it
(a server that answers 200 instead of 206 sends the whole file, which then replaces the
`.part`). Only a wrong checksum deletes the `.part`. The dataset folder appears, by one
rename, only after the tar was verified and fully extracted, so `{task}/dataset.json`
existing means the dataset is complete.

Only the standard library and tqdm are used, so the `download` stage starts fast.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import re
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


class _RangeNotSatisfiable(Exception):
    """HTTP 416 to a Range request; `size` is the whole file's size if the server said it."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


def _open_url(url: str, offset: int = 0) -> http.client.HTTPResponse:
    """GET `url`; from byte `offset` on (a Range request) when `offset` > 0."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the open connection of the error response
        if exc.code == 416 and offset:
            raise _RangeNotSatisfiable(_content_range(exc.headers)[1]) from None
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


def _content_range(headers: Any) -> tuple[int | None, int | None]:
    """(first byte, whole size) from `Content-Range: bytes A-B/T` or `bytes */T`; None: unknown."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*",
                         headers.get("Content-Range") or "")
    if match is None:
        return None, None
    first, size = match.groups()
    return (int(first) if first is not None else None), (int(size) if size != "*" else None)


def _open_from(url: str, offset: int) -> tuple[http.client.HTTPResponse | None, int]:
    """Open `url` to continue a `.part` of `offset` bytes: (response, byte its body starts at).

    206 for exactly the missing bytes: append them. 200 (the server ignores Range) or a 206 for
    other bytes: the whole file, starting over. 416 because the `.part` already holds the whole
    file: (None, offset), nothing left to fetch; 416 for any other reason: start over.
    """
    if not offset:
        return _open_url(url), 0
    try:
        response = _open_url(url, offset)
    except _RangeNotSatisfiable as exc:
        if exc.size == offset:
            return None, offset
        return _open_url(url), 0
    if response.status == 206 and _content_range(response.headers)[0] == offset:
        return response, offset
    if response.status != 200:
        response.close()
        response = _open_url(url)
    return response, 0


def _interrupted(url: str, part: Path, written: int, total: int | None,
                 cause: str) -> DownloadError:
    of_total = f" of {total}" if total is not None else ""
    return DownloadError(
        f"transfer of {url} was interrupted after {written}{of_total} bytes ({cause}); "
        f"the partial file {part} was kept: check your network and rerun to resume"
    )


def _read_chunks(response: http.client.HTTPResponse, url: str, part: Path, start: int,
                 total: int | None) -> Iterator[bytes]:
    """Yield the body; a dropped connection or a body shorter than announced is an error.

    `start` is the byte of the file the body begins at, `total` the whole file's size.
    """
    written = start
    while True:
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _interrupted(url, part, written, total, str(exc) or type(exc).__name__) from exc
        if not chunk:
            break
        written += len(chunk)
        yield chunk
    # http.client returns b"" when the server closes early, without raising: count ourselves.
    if total is not None and written < total:
        raise _interrupted(url, part, written, total, "connection closed early")


def _write_chunk(out: BinaryIO, chunk: bytes, part: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise DownloadError(
            f"could not write {part} ({exc}): check free disk space and permissions, then rerun "
            f"to resume"
        ) from exc


def _stream_to(url: str, part: Path, progress: bool) -> None:
    """Bring `part` to the whole content of `url`, resuming what an earlier call left in it."""
    offset = part.stat().st_size if part.is_file() else 0
    response, start = _open_from(url, offset)
    if response is None:
        return  # the .part already holds every byte; the caller checks the md5
    with response, open(part, "ab" if start else "wb") as out:
        length = _content_length(response)
        total = start + length if length is not None else None
        with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            for chunk in _read_chunks(response, url, part, start, total):
                _write_chunk(out, chunk, part)
                bar.update(len(chunk))


def download_file(url: str, dest: Path, md5: str, progress: bool = True) -> Path:
    """Download `url` to `dest`, verified against `md5`; skip if `dest` already matches it.

    An interrupted transfer leaves `dest.part`, which the next call resumes (see the module
    docstring). The md5 is computed over the whole `.part` once it is complete, however many
    calls it took; a mismatch deletes it.
    """
    dest = Path(dest)
    expected = md5.lower()
    part = _part_path(dest)
    if dest.is_file() and _file_md5(dest) == expected:
        part.unlink(missing_ok=True)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    _stream_to(url, part, progress)
    actual = _file_md5(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected md5 {expected}, got {actual}; the downloaded "
            f"file {part} was deleted. Rerun to download it again; if it persists, the file "
            f"behind the URL changed: check the URL and md5 in the task table"
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

    The folder appears only once the tar's md5 matched and every member was extracted, so its
    `dataset.json` marks it complete and a rerun returns at once. An interrupted download is
    resumed from `data_dir/task.tar.part`. `source` = (url, md5) overrides the bundled table
    (tests, mirrors).
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
