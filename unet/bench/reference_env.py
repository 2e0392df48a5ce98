"""The benchmarks' reference virtualenvs, found here, never made here.

nnU-Net v2 (with the CPU build of torch) is the measuring stick of the preprocessing and loader
benchmarks, and JAX the second backend of the training benchmark; neither is a dependency of the
package, so each lives in an environment of its own, pinned and built outside the package by
`make bench-env` (the `benchmark_*` rules run that target themselves). The caller says where the
environment is: the rules pass their own folder, the command lines take --nnunet-venv / --jax-venv.
"""

from __future__ import annotations

import os
from pathlib import Path

BUILD_COMMAND = "make bench-env"
STAMP = ".installed"  # written last by the build: without it the install is missing or unfinished


def venv_python(venv_dir: str | os.PathLike | None, what: str, flag: str, default_name: str) -> Path:
    """The interpreter of the finished virtualenv `venv_dir` holding `what`; an error naming the
    folder, the command line flag and the command that builds it when there is none."""
    build = (f"`{BUILD_COMMAND}` in the repository builds it as .bench/{default_name} "
             f"(then pass {flag} .bench/{default_name})")
    if venv_dir is None:
        raise ValueError(f"{what} runs from a virtualenv of its own, and none was given ({flag}): {build}")
    venv_dir = Path(venv_dir)
    python = venv_dir / "bin" / "python"
    if not python.exists() or not (venv_dir / STAMP).exists():
        missing = python if not python.exists() else venv_dir / STAMP
        raise FileNotFoundError(f"{flag} {venv_dir}: no finished {what} virtualenv there ({missing} is "
                                f"missing): {build}")
    return python


def nnunet_python(venv_dir: str | os.PathLike | None) -> Path:
    """The nnU-Net v2 virtualenv's interpreter (about 2 GB)."""
    return venv_python(venv_dir, "nnU-Net v2", "--nnunet-venv", "nnunet-venv")


def jax_python(venv_dir: str | os.PathLike | None) -> Path:
    """The JAX virtualenv's interpreter (about 300 MB; this package installed in it, editable)."""
    return venv_python(venv_dir, "JAX (KERAS_BACKEND=jax)", "--jax-venv", "jax-venv")
