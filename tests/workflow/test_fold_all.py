"""Fold `all` and fine-tuning through the workflow: one real run of `folds: [all]` (train on every
case, then predict the test set; no validation, no evaluation), dry runs of what adding the
cross-validation folds plans, and a fine-tuning run whose model file is an input of `train`."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.workflow


def _workflow_tests():
    """tests/workflow/test_workflow.py as a module: its reduced demo config and helpers."""
    spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOW = _workflow_tests()


def _config(tmp: Path, name: str, folds, **train) -> Path:
    """The reduced demo of test_workflow.py with `folds` and a few training steps (this module
    checks what runs, not what is learnt)."""
    path = WORKFLOW._write_config(tmp, name)
    config = yaml.safe_load(path.read_text())
    config["folds"] = folds
    config["train"].update({"epochs": 1, "steps_per_epoch": 3, **train})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def fold_all_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fold_all")
    config = _config(tmp, "config.yaml", ["all"])
    result = WORKFLOW.snakemake(tmp, config)
    assert result.returncode == 0, result.stderr[-5000:]
    return tmp, config


def test_fold_all_trains_on_every_case_and_predicts_the_test_set(fold_all_run):
    tmp, _ = fold_all_run
    results = tmp / "results" / "demo" / "3d_fullres"
    for name in ("model.keras", "training_log.jsonl", "training_curves.png", "checkpoints/best.weights.h5"):
        assert (results / "fold_all" / name).is_file(), name
    log = [json.loads(line) for line in (results / "fold_all" / "training_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "val_dice" not in log[0]
    logs = tmp / "results" / "demo" / "logs"
    assert "6 training cases, no validation" in (logs / "train" / "3d_fullres" / "fold_all.log").read_text()
    assert (results / "predictions" / "test" / "DEMO_006.nii.gz").is_file()
    # No cross-validation: no fold predictions, no evaluation, no postprocessing chosen.
    assert sorted(p.name for p in (results / "predictions").iterdir()) == ["test"]
    assert not (results / "evaluation").exists() and not (results / "postprocessing.json").exists()
    assert not (results.parent / "best_configuration.json").exists()
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, _config(tmp, "again.yaml", ["all"]), "--dry-run")) == {}


def test_fold_all_exports_an_archive_that_predicts_as_the_run(fold_all_run):
    """`snakemake export` with fold `all` alone: no postprocessing to carry; its best checkpoint is
    its final network (no validation); the archive predicts the test set as `ensemble` did."""
    import subprocess
    import sys
    import zipfile

    import nibabel as nib
    import numpy as np

    tmp, config = fold_all_run
    results = tmp / "results" / "demo" / "3d_fullres"
    info = json.loads((results / "fold_all" / "model.json").read_text())
    assert info["checkpoints"]["best"]["epoch"] == info["checkpoints"]["final"]["epoch"] == 0
    result = WORKFLOW.snakemake(tmp, config, "export")
    assert result.returncode == 0, result.stderr[-5000:]
    with zipfile.ZipFile(results / "model.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["folds"] == ["all"] and "postprocessing.json" not in manifest["members"]
    assert {"fold_all/model.keras", "fold_all/model.json", "plans.json", "config.json"} <= set(manifest["members"])
    out = tmp / "from_archive"
    predicted = subprocess.run(
        [sys.executable, "-m", "unet", "predict", "-i", str(tmp / "data" / "demo" / "imagesTs"), "-o", str(out),
         "-m", str(results / "model.zip"), "--overlap", "0.25", "--batch-size", "4"],
        capture_output=True, text=True, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    for path in sorted((results / "predictions" / "test").glob("*.nii.gz")):
        np.testing.assert_array_equal(np.asarray(nib.load(out / path.name).dataobj), np.asarray(nib.load(path).dataobj))


def test_adding_the_cv_folds_evaluates_them_and_not_fold_all(fold_all_run):
    tmp, _ = fold_all_run
    result = WORKFLOW.snakemake(tmp, _config(tmp, "cv.yaml", [0, 1, "all"]), "--dry-run")
    jobs = WORKFLOW.planned_jobs(result)
    assert jobs == {"train": 2, "predict": 2, "evaluate": 2, "report": 1, "ensemble": 1, "postprocessing": 1,
                    "select_configuration": 1, "postprocess_test": 1, "all": 1}
    text = result.stdout + result.stderr
    assert "evaluation/fold_all" not in text and "predictions/fold_all" not in text
    # The test set is predicted with the three models.
    ensemble = text.split("rule ensemble:")[1].split("output:")[0]
    assert all(f"fold_{fold}/model.keras" in ensemble for fold in (0, 1, "all"))


def test_fine_tuning_starts_from_the_model_file_and_reruns_when_it_changes(fold_all_run):
    tmp, _ = fold_all_run
    pretrained = tmp / "pretrained" / "model.keras"
    pretrained.parent.mkdir()
    shutil.copy(tmp / "results" / "demo" / "3d_fullres" / "fold_all" / "model.keras", pretrained)
    config = _config(tmp, "finetune.yaml", ["all"], init_weights=str(pretrained.parent))
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run")) == {
        "train": 1, "ensemble": 1, "all": 1}  # a new setting: retrain
    result = WORKFLOW.snakemake(tmp, config)
    assert result.returncode == 0, result.stderr[-5000:]
    log = (tmp / "results" / "demo" / "logs" / "train" / "3d_fullres" / "fold_all.log").read_text()
    assert f"init_weights {pretrained}: " in log and "layers copied; new: head_ds1 (not in the source model)" in log
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run")) == {}
    # A new version of the pretrained model, the fine-tuned one (touching the file is not enough:
    # Snakemake keeps a job whose newer input has the checksum it recorded, for small files).
    shutil.copy(tmp / "results" / "demo" / "3d_fullres" / "fold_all" / "model.keras", pretrained)
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run")) == {
        "train": 1, "ensemble": 1, "all": 1}
