"""The machine's own dense float32 matmul rate on the benchmark's threads: the peak of which the
training benchmark reports each configuration's FLOP rate as a fraction.

Measured with two libraries, each in a fresh interpreter, and the higher taken as the peak (a
training step is held to the best the machine showed, not to the slower library):

- numpy (its BLAS, OpenBLAS in the wheels): a BLAS sizes its thread pool once, when it is loaded,
  from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, and numpy is already loaded here
  with one thread per core; a fresh interpreter with those set is the way to give it our thread
  count without threadpoolctl (not a dependency).
- TensorFlow's `tf.linalg.matmul` with oneDNN on and its intra-op pool at our thread count: its
  best CPU kernel (on this repository's AVX-512 EPYC, 2-3x numpy's OpenBLAS). Outside
  this process, since TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import: the peak is then
  the same whichever way the benchmarked run set it, and a run with oneDNN off shows how far below
  the machine's rate TensorFlow's fallback kernels are. With a GPU the product runs there.

Each is the best of `repeats` timed products after one untimed one: other work on the machine can
only slow a product down, never speed it up.
"""

from __future__ import annotations

import os
import subprocess
import sys

# 2048^3: 17 GFLOP per product, 48 MiB of operands: large enough that packing and thread start-up
# are noise (the rate saturates from about 1024 on), small enough for a product to take well under
# a second.
MATMUL_SIZE = 2048
REPEATS = 20

# Run by a fresh interpreter, so self-contained: numpy or TensorFlow only.
_MATMUL = """
import sys, time
n, repeats, library = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if library == "numpy":
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    product = lambda: a @ b
else:
    import tensorflow as tf
    a, b = (tf.random.stateless_normal((n, n), seed=(0, i), dtype=tf.float32) for i in (1, 2))
    product = lambda: tf.linalg.matmul(a, b).numpy()  # .numpy() waits for the product
product()
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    product()
    best = min(best, time.perf_counter() - start)
print(2 * n ** 3 / best)
"""


def available_threads() -> int:
    """The CPUs this process may run on (its affinity mask, which a batch system may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _matmul_flop_s(library: str, env: dict, size: int, repeats: int) -> float:
    result = subprocess.run([sys.executable, "-c", _MATMUL, str(size), str(repeats), library],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"timing the {library} matmul failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.split()[-1])


def numpy_matmul_flop_s(threads: int, size: int = MATMUL_SIZE, repeats: int = REPEATS) -> float:
    """FLOP/s of numpy's float32 `size` x `size` product with its BLAS on `threads` threads."""
    env = {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return _matmul_flop_s("numpy", env, size, repeats)


def tensorflow_matmul_flop_s(threads: int, size: int = MATMUL_SIZE, repeats: int = REPEATS) -> float:
    """FLOP/s of TensorFlow's float32 `size` x `size` product, oneDNN on, `threads` intra-op threads."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": "1"}
    return _matmul_flop_s("tensorflow", env, size, repeats)


def matmul_peak(threads: int, size: int = MATMUL_SIZE, repeats: int = REPEATS) -> dict:
    """The peak (the higher of numpy's and TensorFlow's rate) and both rates, in GFLOP/s."""
    numpy_rate = numpy_matmul_flop_s(threads, size, repeats)
    tensorflow_rate = tensorflow_matmul_flop_s(threads, size, repeats)
    return {"gflop_s": max(numpy_rate, tensorflow_rate) / 1e9, "numpy_gflop_s": numpy_rate / 1e9,
            "tensorflow_onednn_gflop_s": tensorflow_rate / 1e9, "threads": int(threads), "matmul_size": int(size),
            "dtype": "float32", "repeats": int(repeats)}


def peak_fraction(row: dict, peak: dict) -> float:
    """A benchmark row's achieved FLOP rate as a fraction of the matmul peak."""
    return row["achieved_tflop_s"] * 1e3 / peak["gflop_s"]
