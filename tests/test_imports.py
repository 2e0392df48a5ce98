"""Stages that need no network must not pay for importing TensorFlow or Keras (DESIGN.md)."""

import ast
import subprocess
import sys
from pathlib import Path

import unet

LIGHT_MODULES = [
    "unet",
    "unet.runtime",
    "unet.io.datasets",
    "unet.io.download",
    "unet.io.labels",
    "unet.io.images",
    "unet.io.sitk_io",
    "unet.io.dicom",
    "unet.preprocessing.fingerprint",
    "unet.preprocessing.plan",
    "unet.preprocessing.spacing",
    "unet.preprocessing.topology",
    "unet.preprocessing.memory",
    "unet.preprocessing.normalization",
    "unet.preprocessing.search",
    "unet.preprocessing.configurations",
    "unet.preprocessing.planning",
    "unet.preprocessing.preprocess",
    "unet.preprocessing.cascade",  # the previous stage's segmentation on the fullres grid
    "unet.evaluation.evaluate",
    "unet.evaluation.summary",
    "unet.evaluation.plots",
    "unet.evaluation.report",
    "unet.evaluation.cv",
    "unet.evaluation.postprocessing",
    "unet.evaluation.selection",
    "unet.evaluation.choice",
    "unet.io.demo",
    "unet.data.splits",
    "unet.inference.sliding_window",
    "unet.inference.probabilities",
    "unet.inference.restore",
    "unet.inference.predict",
    "unet.inference.postprocess",
    "unet.inference.runtimes",   # an ONNX prediction imports onnxruntime only
    "unet.inference.runtime_export",
    "unet.inference.errors",
    "unet.inference.model_info",  # read by the rules (common.smk) and written by the train stage's batch step
    "unet.inference.archive",     # export needs no network
    "unet.inference.unpack",
    "unet.inference.model_folder",
    "unet.training.launch",      # the batch step of a multi-node or Horovod training only waits
    "unet.training.multinode",
    "unet.training.pretrained",  # the workflow resolves train.init_weights with it
]


def _top_level_packages_after_import(modules):
    code = ("import sys\n"
            + "".join(f"import {m}\n" for m in modules)
            + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_light_stages_do_not_import_tensorflow_or_keras():
    loaded = _top_level_packages_after_import(LIGHT_MODULES)
    assert "numpy" in loaded and "unet" in loaded  # the check sees what the imports load
    assert not loaded & {"tensorflow", "keras"}, sorted(loaded & {"tensorflow", "keras"})


def test_model_sources_do_not_use_tensorflow():
    # The model must run on any Keras 3 backend. Keras' numpy backend needs jax (not installed),
    # so this is checked on the source (network, losses, the objective's loss code, region
    # painting): no TensorFlow import and no `tf` name anywhere. tests/bench runs it under JAX.
    root = Path(unet.__file__).parent
    paths = sorted(root.joinpath("model").glob("*.py")) + [root / "training" / "objective.py",
                                                           root / "inference" / "regions.py"]
    assert {p.name for p in paths} >= {"network.py", "losses.py"}
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "tensorflow" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "tensorflow", path
            elif isinstance(node, ast.Name):
                assert node.id != "tf", f"{path}:{node.lineno}"


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules `path` (a module of `package`) imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from unet import demo` imports unet.demo: count the names as modules too.
            names.update(f"{module}.{a.name}" for a in node.names)
            names.add(module)
    return names


def test_io_imports_nothing_above_it():
    # DESIGN.md, layers: `unet.io` is the ground floor; `unet` itself is only a prefix here.
    root = Path(unet.__file__).parent
    paths = sorted(root.joinpath("io").glob("*.py"))
    assert {p.name for p in paths} >= {"datasets.py", "demo.py", "msd.py"}
    for path in paths:
        for name in _imported_modules(path, "unet.io"):
            if name == "unet" or not name.startswith("unet."):
                continue
            assert name.startswith("unet.io.") or name == "unet.io", f"{path.name} imports {name}"
