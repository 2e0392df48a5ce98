"""unet.io.download against a real HTTP server on 127.0.0.1 and real tar files."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

import unet.io.download as download_module
from unet.io.download import (
    DownloadError,
    download_file,
    download_msd_task,
    extract_tar,
    msd_task_source,
)

TASK = "TaskXX_Tiny"
DATASET_JSON = {"name": "Tiny", "modality": {"0": "CT"}, "labels": {"0": "background"},
                "training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]}
IMAGE_BYTES = b"not really a nifti, just bytes" * 100


# --- a tiny file server ---------------------------------------------------------------------------

@dataclass
class Served:
    """What the server hands out and what it saw.

    files: path -> body. cut: path -> byte of the file at which the *next* response to that path
    stops (once; the connection then closes early). honour_range: answer `Range: bytes=N-` with
    206 and the rest of the file (else 200 and the whole file). requests, ranges: each request's
    path and Range header (None: none sent); sent: body bytes written over all responses.
    """
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    honour_range: bool = True
    requests: list[str] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    sent: int = 0
    base_url: str = ""

    def add(self, name: str, body: bytes, truncate: bool = False) -> str:
        self.files[f"/{name}"] = body
        if truncate:
            self.cut[f"/{name}"] = len(body) // 2
        return f"{self.base_url}/{name}"


def _handler_for(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            served.requests.append(self.path)
            served.ranges.append(self.headers.get("Range"))
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if self.headers.get("Range") and served.honour_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            # Always announce the full rest; a cut response then closes before the end of it.
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            stop = max(start, served.cut.pop(self.path, len(body)))
            self.wfile.write(body[start:stop])
            served.sent += stop - start
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass  # keep pytest output clean

    return Handler


@pytest.fixture
def server() -> Iterator[Served]:
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(served))
    served.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() otherwise waits up to 0.5 s per test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- building tars --------------------------------------------------------------------------------

def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tiny_msd_tar(prefix: str = f"{TASK}/", junk: bool = True) -> bytes:
    members = {
        f"{prefix}dataset.json": json.dumps(DATASET_JSON).encode(),
        f"{prefix}imagesTr/a.nii.gz": IMAGE_BYTES,
    }
    if junk:  # what tar on macOS adds: resource forks beside the folder and beside each file
        members[f"._{TASK}"] = b"\x00\x05\x16\x07 resource fork"
        members[f"{prefix}imagesTr/._a.nii.gz"] = b"\x00\x05\x16\x07 resource fork"
    return _tar_bytes(members)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- download_msd_task ----------------------------------------------------------------------------

def test_good_checksum_extracts_dataset_and_removes_tar(server: Served, tmp_path: Path) -> None:
    body = _tiny_msd_tar()
    url = server.add(f"{TASK}.tar", body)
    data_dir = tmp_path / "data"

    result = download_msd_task(TASK, data_dir, progress=False, source=(url, _md5(body)))

    assert result == data_dir / TASK
    assert json.loads((result / "dataset.json").read_text()) == DATASET_JSON
    assert (result / "imagesTr" / "a.nii.gz").read_bytes() == IMAGE_BYTES
    assert not (result / "imagesTr" / "._a.nii.gz").exists()  # macOS junk skipped
    assert sorted(p.name for p in data_dir.iterdir()) == [TASK]  # no tar, .part or temp folder


def test_existing_dataset_is_not_downloaded_again(server: Served, tmp_path: Path) -> None:
    body = _tiny_msd_tar()
    url = server.add(f"{TASK}.tar", body)
    download_msd_task(TASK, tmp_path, progress=False, source=(url, _md5(body)))

    download_msd_task(TASK, tmp_path, progress=False, source=(url, _md5(body)))

    assert server.requests == [f"/{TASK}.tar"]


def test_bad_checksum_raises_and_leaves_nothing(server: Served, tmp_path: Path) -> None:
    body = _tiny_msd_tar()
    url = server.add(f"{TASK}.tar", body)
    wrong = "0" * 32

    with pytest.raises(DownloadError) as excinfo:
        download_msd_task(TASK, tmp_path, progress=False, source=(url, wrong))

    message = str(excinfo.value)
    assert wrong in message and _md5(body) in message and url in message
    assert f"{TASK}.tar.part was deleted" in message
    assert list(tmp_path.iterdir()) == []  # no dataset folder, no tar, no .part


def test_interrupted_transfer_leaves_a_part_that_the_next_call_resumes(
        server: Served, tmp_path: Path) -> None:
    body = _tiny_msd_tar()
    half = len(body) // 2
    url = server.add(f"{TASK}.tar", body, truncate=True)
    part = tmp_path / f"{TASK}.tar.part"

    with pytest.raises(DownloadError, match="interrupted") as excinfo:
        download_msd_task(TASK, tmp_path, progress=False, source=(url, _md5(body)))

    message = str(excinfo.value)
    assert url in message and str(part) in message and "resume" in message
    assert f"{half} of {len(body)} bytes" in message
    assert list(tmp_path.iterdir()) == [part]  # no dataset folder, no tar: nothing looks finished
    assert part.read_bytes() == body[:half]

    result = download_msd_task(TASK, tmp_path, progress=False, source=(url, _md5(body)))

    assert server.ranges == [None, f"bytes={half}-"]
    assert server.sent == len(body)  # the second request fetched only the missing half
    assert json.loads((result / "dataset.json").read_text()) == DATASET_JSON
    assert sorted(p.name for p in tmp_path.iterdir()) == [TASK]


def test_http_error_names_the_url(server: Served, tmp_path: Path) -> None:
    url = f"{server.base_url}/missing.tar"

    with pytest.raises(DownloadError, match="404") as excinfo:
        download_msd_task(TASK, tmp_path, progress=False, source=(url, "0" * 32))

    assert url in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


# --- download_file --------------------------------------------------------------------------------

def test_download_file_skips_when_dest_matches(server: Served, tmp_path: Path) -> None:
    body = b"payload" * 1000
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"

    assert download_file(url, dest, _md5(body)) == dest  # progress bar on: must not break anything
    assert dest.read_bytes() == body
    download_file(url, dest, _md5(body).upper(), progress=False)

    assert server.requests == ["/file.bin"]


def test_download_file_replaces_a_wrong_dest(server: Served, tmp_path: Path) -> None:
    body = b"payload" * 1000
    url = server.add("file.bin", body)
    dest = _write(tmp_path / "file.bin", b"stale")

    download_file(url, dest, _md5(body), progress=False)

    assert dest.read_bytes() == body
    assert not (tmp_path / "file.bin.part").exists()


def test_resumed_file_is_checked_as_a_whole(server: Served, tmp_path: Path) -> None:
    body = bytes(range(256)) * 40
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"
    # A .part whose bytes are wrong (e.g. left by another file): appending the rest to it gives
    # a file of the right size but the wrong content, which only an md5 of the whole file catches.
    _write(tmp_path / "file.bin.part", b"x" * 1000)

    with pytest.raises(DownloadError, match="checksum mismatch") as excinfo:
        download_file(url, dest, _md5(body), progress=False)

    assert server.ranges == ["bytes=1000-"]
    assert f"{tmp_path / 'file.bin.part'} was deleted" in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []
    download_file(url, dest, _md5(body), progress=False)  # the next call starts afresh
    assert server.ranges[-1] is None and dest.read_bytes() == body


def test_server_ignoring_range_makes_the_download_start_over(server: Served,
                                                             tmp_path: Path) -> None:
    server.honour_range = False
    body = bytes(range(256)) * 40
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"
    _write(tmp_path / "file.bin.part", b"x" * 1000)  # appended to, it would fail the md5

    download_file(url, dest, _md5(body), progress=False)

    assert server.ranges == ["bytes=1000-"]  # asked for the rest, got 200 and the whole file
    assert dest.read_bytes() == body
    assert not (tmp_path / "file.bin.part").exists()


def test_complete_part_is_verified_without_fetching_again(server: Served, tmp_path: Path) -> None:
    body = b"payload" * 1000
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"
    _write(tmp_path / "file.bin.part", body)  # e.g. interrupted between the last byte and rename

    download_file(url, dest, _md5(body), progress=False)

    assert server.ranges == [f"bytes={len(body)}-"] and server.sent == 0  # answered 416
    assert dest.read_bytes() == body


def test_part_longer_than_the_file_starts_over(server: Served, tmp_path: Path) -> None:
    body = b"payload" * 1000
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"
    _write(tmp_path / "file.bin.part", body + b"tail")

    download_file(url, dest, _md5(body), progress=False)

    assert server.ranges == [f"bytes={len(body) + 4}-", None]  # 416, then the whole file
    assert dest.read_bytes() == body


def test_ctrl_c_keeps_the_part_for_the_next_call(server: Served, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    body = bytes(range(256)) * 40
    url = server.add("file.bin", body)
    dest = tmp_path / "file.bin"
    write_chunk = download_module._write_chunk
    calls = []

    def write_then_interrupt(out, chunk, part):  # Ctrl-C while the second chunk arrives
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        write_chunk(out, chunk, part)

    monkeypatch.setattr(download_module, "_CHUNK_BYTES", 1000)
    monkeypatch.setattr(download_module, "_write_chunk", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        download_file(url, dest, _md5(body), progress=False)
    assert (tmp_path / "file.bin.part").read_bytes() == body[:1000]

    monkeypatch.setattr(download_module, "_write_chunk", write_chunk)
    download_file(url, dest, _md5(body), progress=False)

    assert server.ranges == [None, "bytes=1000-"]
    assert dest.read_bytes() == body and not (tmp_path / "file.bin.part").exists()


# --- extract_tar ----------------------------------------------------------------------------------

def test_extract_tar_refuses_path_traversal(tmp_path: Path) -> None:
    archive = _write(tmp_path / "evil.tar", _tar_bytes({
        f"{TASK}/dataset.json": b"{}",
        "../evil.txt": b"gotcha",
    }))
    out = tmp_path / "out"
    out.mkdir()
    dest = out / TASK

    with pytest.raises(DownloadError, match="refused") as excinfo:
        extract_tar(archive, dest)

    assert str(archive) in str(excinfo.value)
    assert list(tmp_path.rglob("evil.txt")) == []
    assert list(out.iterdir()) == []  # neither dest nor the temporary folder is left


def test_extract_tar_without_top_level_folder_uses_root(tmp_path: Path) -> None:
    archive = _write(tmp_path / "flat.tar", _tiny_msd_tar(prefix="", junk=False))
    dest = tmp_path / TASK

    extract_tar(archive, dest)

    assert json.loads((dest / "dataset.json").read_text()) == DATASET_JSON
    assert (dest / "imagesTr" / "a.nii.gz").read_bytes() == IMAGE_BYTES


def test_extract_tar_without_dataset_json_fails(tmp_path: Path) -> None:
    archive = _write(tmp_path / "nojson.tar", _tar_bytes({f"{TASK}/imagesTr/a.nii.gz": b"x"}))
    dest = tmp_path / "out" / TASK

    with pytest.raises(DownloadError, match="dataset.json"):
        extract_tar(archive, dest)

    assert list((tmp_path / "out").iterdir()) == []


def test_extract_tar_refuses_to_overwrite(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar", _tiny_msd_tar())
    dest = tmp_path / TASK
    dest.mkdir()
    keep = _write(dest / "mine.txt", b"user data")

    with pytest.raises(DownloadError, match="already exists"):
        extract_tar(archive, dest)

    assert keep.read_bytes() == b"user data"
    assert not (dest / "dataset.json").exists()


# --- the task table -------------------------------------------------------------------------------

def test_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(DownloadError) as excinfo:
        msd_task_source("Task99_Nope")

    message = str(excinfo.value)
    assert "Task99_Nope" in message
    assert "Task01_BrainTumour" in message and "Task10_Colon" in message


def test_unknown_task_fails_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="Task04_Hippocampus"):
        download_msd_task("Task99_Nope", tmp_path, progress=False)

    assert list(tmp_path.iterdir()) == []


def test_msd_task_source_reads_bundled_table() -> None:
    assert msd_task_source("Task01_BrainTumour") == (
        "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar",
        "240a19d752f0d9e9101544901065d872",
    )
    assert msd_task_source("Task04_Hippocampus")[1] == "9d24dba78a72977dbd1d2e110310f31b"
