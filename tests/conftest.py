"""Fixtures shared across test folders."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def nnunet_python() -> Path:
    """nnU-Net v2's virtualenv's Python, the yardstick of the `nnunet` tests: $NNUNET_VENV, else
    .bench/nnunet-venv (`make test` builds it first; built here when missing, minutes)."""
    if "NNUNET_VENV" in os.environ:
        venv = Path(os.environ["NNUNET_VENV"])
        assert (venv / "bin" / "python").is_file(), f"NNUNET_VENV={venv}: no bin/python there"
        return venv / "bin" / "python"
    venv = REPO / ".bench" / "nnunet-venv"
    if not (venv / ".installed").is_file():
        done = subprocess.run(["make", ".bench/nnunet-venv/.installed"], cwd=REPO, capture_output=True, text=True,
                              timeout=3600)
        assert done.returncode == 0, f"building nnU-Net's virtualenv failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return venv / "bin" / "python"
