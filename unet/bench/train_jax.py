"""The training benchmark's `jax compile` rows: the same network, loss and `model.compile` +
`train_on_batch` under KERAS_BACKEND=jax, in a virtualenv of its own (the project's environment
has no JAX; `make bench-env` builds it with this package installed, editable). XLA is how JAX
always runs, so only AMP varies.

The parent (`run_jax`) writes a job file and starts this module in that virtualenv:

    JAX_VENV/bin/python -m unet.bench.train_jax JOB_JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run_jax(plan, batch_size: int, amps, warmup: int, steps: int, jax_venv: str | Path | None,
            threads: int | None = None) -> dict:
    """`jax compile` rows (and the JAX/Keras versions and devices) from a subprocess in the
    virtualenv `jax_venv`."""
    from unet.bench.reference_env import jax_python

    python = jax_python(jax_venv)
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"plan": plan.to_json(), "batch_size": batch_size, "amps": list(amps),
                                   "warmup": warmup, "steps": steps}))
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
        if threads:  # XLA's CPU thread pool, as TF_NUM_INTRAOP_THREADS for TensorFlow
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=true "
                                f"intra_op_parallelism_threads={threads}").strip()
        subprocess.run([str(python), "-m", "unet.bench.train_jax", str(job)], env=env, check=True)
        return json.loads((Path(tmp) / "result.json").read_text())


def run_job(job_path: Path) -> None:
    """In the JAX virtualenv: the grid of the job file, written to result.json beside it."""
    import jax
    import keras

    from unet.bench.train import run_grid
    from unet.preprocessing.plan import Plan

    job = json.loads(job_path.read_text())
    plan = Plan.from_json(job["plan"])
    rows = run_grid(plan, job["batch_size"], job["amps"], [True], job["warmup"], job["steps"], ["compile"])
    result = {"rows": rows, "jax": jax.__version__, "keras": keras.__version__,
              "devices": [str(d) for d in jax.devices()]}
    (job_path.parent / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run_job(Path(sys.argv[1]))
