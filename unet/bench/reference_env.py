"""A separate virtualenv with nnU-Net v2 (and the CPU build of torch), made on first use.

nnU-Net is the measuring stick of the preprocessing and loader benchmarks, never a dependency
of the package: it lives in its own environment, pinned by envs/nnunet-bench.txt.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[2] / "envs" / "nnunet-bench.txt"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".bench" / "nnunet-venv"


def nnunet_python(venv_dir: str | Path = DEFAULT_DIR, requirements: str | Path = REQUIREMENTS) -> Path:
    """Path of the Python interpreter of the nnU-Net virtualenv, creating it when missing.

    A stamp file holding the requirements text marks a finished install, so an interrupted
    install is redone and a changed pin list reinstalls.
    """
    venv_dir = Path(venv_dir)
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".installed"
    wanted = Path(requirements).read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    print(f"installing nnU-Net v2 into {venv_dir} (once; about 2 GB)", file=sys.stderr, flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
    stamp.write_text(wanted)
    return python
