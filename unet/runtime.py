"""Process settings that must be made before TensorFlow is imported (threads, oneDNN, GPUs), and
what a speed figure depends on (CPU, vector extensions, oneDNN)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


# CPU features after which TensorFlow switches its oneDNN kernels on by itself (Linux, x86); on
# other CPUs (AVX2 only, e.g.) its fallback 3D convolutions run about 8x slower.
ONEDNN_DEFAULT_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
# The vector extensions worth recording next to a speed figure.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                     "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def configure_tensorflow(threads: int) -> None:
    """Quiet TensorFlow's start-up logging, size its thread pools to the job's `threads`, and
    switch its oneDNN CPU kernels on unless the user set TF_ENABLE_ONEDNN_OPTS.

    Call before anything imports TensorFlow: it reads these variables once, at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(max(1, threads))
    os.environ["TF_NUM_INTEROP_THREADS"] = str(max(1, min(2, threads)))


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model, the vector extensions of VECTOR_EXTENSIONS it has), from /proc/cpuinfo on Linux."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())  # the first CPU's
    model = fields.get("model name") or fields.get("cpu model") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return model, [name for name in VECTOR_EXTENSIONS if name in flags]


def onednn_enabled(extensions: list[str] | None = None) -> bool:
    """Whether TensorFlow uses its oneDNN kernels in this process: TF_ENABLE_ONEDNN_OPTS when set,
    else TensorFlow's own default (on only for CPUs with the features of ONEDNN_DEFAULT_FEATURES)."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is not None:
        return value.strip().lower() in ("1", "true", "yes", "on")
    extensions = cpu_description()[1] if extensions is None else extensions
    return platform.machine() in ("x86_64", "AMD64") and any(f in extensions for f in ONEDNN_DEFAULT_FEATURES)


def machine_info(threads: int) -> dict:
    """What a speed figure depends on: CPU model, its vector extensions, threads, oneDNN on or off."""
    model, extensions = cpu_description()
    return {"cpu": model, "vector_extensions": extensions, "threads": int(threads),
            "onednn": onednn_enabled(extensions)}


# -- GPUs ----------------------------------------------------------------------------------------
# Snakemake's `gpu` resource keeps concurrent jobs within the number of GPUs of the machine
# (profiles/default), but does not say which GPU a job gets. `assign_gpus` does: a job takes
# the first free GPU ids, marked by a lock on a file per id, and holds them until it exits.

_held_gpu_locks: list[int] = []  # file descriptors, open (and locked) for the life of the process


def local_gpu_ids() -> list[str]:
    """Ids of the NVIDIA GPUs this process may use: CUDA_VISIBLE_DEVICES when it is set, else the
    GPUs that `nvidia-smi` lists (or /proc/driver/nvidia/gpus holds); [] on a machine without."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            result = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30)
            if result.returncode == 0:
                return [line.strip() for line in result.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def assign_gpus(count: int, lock_dir: str | os.PathLike | None = None, timeout: float = 600.0) -> list[str] | None:
    """Give this process `count` GPUs of its own, by setting CUDA_VISIBLE_DEVICES.

    Takes the first `count` ids of `local_gpu_ids()` whose lock file (`gpu-{id}.lock` in
    `lock_dir`, by default a folder in the temp dir) it can lock, waiting up to `timeout` seconds
    for enough of them, and keeps the locks until the process exits. `count` 0 hides all GPUs.
    Changes nothing and returns None on a machine without GPUs and inside a SLURM job (SLURM
    assigns the GPUs there). Call before TensorFlow is imported; returns the ids taken.
    """
    if "SLURM_JOB_ID" in os.environ:
        return None
    ids = local_gpu_ids()
    if not ids:
        return None
    if count <= 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return []
    count = min(count, len(ids))  # as make_strategy: fewer GPUs than asked for is a warning there
    folder = Path(lock_dir) if lock_dir is not None else Path(tempfile.gettempdir()) / "unet-gpu-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o1777)  # shared by all users' jobs, like /tmp
    deadline = time.monotonic() + timeout
    while True:
        taken: dict[str, int] = {}
        for gpu in ids:
            fd = os.open(folder / f"gpu-{gpu.replace('/', '_')}.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            taken[gpu] = fd
            if len(taken) == count:
                _held_gpu_locks.extend(taken.values())
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(taken)
                return list(taken)
        for fd in taken.values():  # not enough: let go, so that two waiting jobs cannot block each other
            os.close(fd)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no {count} free GPU(s) of {','.join(ids)} after {timeout:.0f} s "
                               f"(lock files in {folder}); is another run using them?")
        time.sleep(1.0)
