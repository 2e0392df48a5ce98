"""Inference runs without the training code, and the command line checks its inputs before it
pays for TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

import unet


def test_inference_never_imports_training():
    paths = sorted(Path(unet.__file__).parent.joinpath("inference").glob("*.py"))
    assert {"predict.py", "standalone.py", "benchmark.py"} <= {p.name for p in paths}
    for path in paths + [Path(unet.__file__).parent / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "unet.training" or n.startswith("unet.training.") for n in names), \
                f"{path}:{node.lineno}"


def test_command_line_modules_import_without_tensorflow():
    code = ("import sys, unet.cli, unet.inference.standalone, unet.inference.benchmark\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "unet" in loaded and "nibabel" in loaded
    assert not loaded & {"tensorflow", "keras"}
