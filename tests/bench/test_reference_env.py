"""The reference virtualenvs are found, never built, by the package: a missing one stops the
benchmark with the folder, the flag and the command that builds it."""

import pytest

from unet.bench.reference_env import jax_python, nnunet_python


def test_a_finished_virtualenv_gives_its_python(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    (tmp_path / ".installed").touch()
    assert nnunet_python(tmp_path) == tmp_path / "bin" / "python"


def test_a_missing_or_unfinished_virtualenv_says_how_to_build_it(tmp_path):
    with pytest.raises(ValueError, match=r"--nnunet-venv.*`make bench-env`.*\.bench/nnunet-venv"):
        nnunet_python(None)
    with pytest.raises(FileNotFoundError, match=rf"--jax-venv {tmp_path}.*bin/python is missing.*`make bench-env`"):
        jax_python(tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()  # an install cut off before its stamp
    with pytest.raises(FileNotFoundError, match=r"\.installed is missing.*\.bench/jax-venv"):
        jax_python(tmp_path)
