"""Pinned virtualenvs for the benchmarks' reference runs, made on first use.

nnU-Net v2 (with the CPU build of torch) is the measuring stick of the preprocessing and loader
benchmarks, and JAX the second backend of the training benchmark; neither is a dependency of the
package, so each lives in an environment of its own under .bench/, pinned by a file in envs/.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NNUNET_REQUIREMENTS = ROOT / "envs" / "nnunet-bench.txt"
NNUNET_DIR = ROOT / ".bench" / "nnunet-venv"


def pinned_venv(venv_dir: str | Path, requirements: str | Path, what: str,
                editable: str | Path | None = None) -> Path:
    """Path of the Python interpreter of a virtualenv holding `requirements` (and `editable`
    installed with --no-deps), creating or updating it when needed.

    A stamp file holding the requirements text marks a finished install, so an interrupted
    install is redone and a changed pin list reinstalls.
    """
    venv_dir = Path(venv_dir)
    python, stamp = venv_dir / "bin" / "python", venv_dir / ".installed"
    wanted = Path(requirements).read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    print(f"installing {what} into {venv_dir} (once)", file=sys.stderr, flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
    if editable is not None:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(editable)],
                       check=True)
    stamp.write_text(wanted)
    return python


def nnunet_python(venv_dir: str | Path = NNUNET_DIR, requirements: str | Path = NNUNET_REQUIREMENTS) -> Path:
    """The nnU-Net v2 virtualenv's interpreter (about 2 GB)."""
    return pinned_venv(venv_dir, requirements, "nnU-Net v2 and torch (CPU)")
