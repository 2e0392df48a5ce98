"""The workflow end to end on a reduced demo, through the Snakemake CLI, and its rerun behaviour.

One real run (6 training cases, 2 folds, a tiny network, 500 steps: enough to learn) is shared by the tests of
this module; the rerun tests ask Snakemake for a dry run with one setting changed and check
which rules it would run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIG = {
    "task": "demo",
    "demo": {"n_train": 6, "n_test": 1, "seed": 0},
    "nfolds": 2,
    "folds": None,
    "configurations": ["3d_fullres"],
    "plan": {"patch_size": [16, 16, 16], "filters": 4, "batch_size": 2},
    "train": {"epochs": 5, "steps_per_epoch": 100},
    "predict": {"overlap": 0.25, "batch_size": 4},
    "evaluate": {"regions": {"whole tumour": [1, 2, 3]}},
}


def _write_config(tmp: Path, name: str, **changes) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config.update(data_dir=str(tmp / "data"), results=str(tmp / "results"))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    assert result.returncode == 0, result.stderr + result.stdout
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    config = _write_config(tmp, "config.yaml")
    result = snakemake(tmp, config)
    assert result.returncode == 0, result.stderr[-5000:]
    return tmp, config


def test_every_output_of_the_contract_exists(finished_run):
    tmp, _ = finished_run
    results = tmp / "results" / "demo"
    for name in ("fingerprint.json", "plans.json", "splits.json", "shards/index.json", "best_configuration.json",
                 "configurations.html", "3d_fullres/postprocessing.json",
                 "3d_fullres/evaluation/summary.json", "3d_fullres/evaluation/dice.png",
                 "3d_fullres/evaluation/summary.html", "3d_fullres/evaluation/hd95.png",
                 "3d_fullres/evaluation/worst_cases.png"):
        assert (results / name).is_file(), name
    configuration = results / "3d_fullres"
    splits = json.loads((results / "splits.json").read_text())
    assert len(splits) == 2
    training = sorted(c for split in splits for c in split["val"])
    assert training == [f"DEMO_{i:03d}" for i in range(6)]
    for case in training:
        for suffix in (".npy", "_seg.npy", ".json"):
            assert (results / "preprocessed" / f"{case}{suffix}").is_file()
    for fold, split in enumerate(splits):
        fold_dir = configuration / f"fold_{fold}"
        for name in ("model.keras", "model_best.keras", "model.json", "training_log.jsonl", "training_curves.png"):
            assert (fold_dir / name).is_file(), f"fold_{fold}/{name}"
        assert any((fold_dir / "checkpoints" / "last").iterdir())
        predicted = sorted(p.name for p in (configuration / "predictions" / f"fold_{fold}").glob("*.nii.gz"))
        assert predicted == [f"{c}.nii.gz" for c in split["val"]]
        table = pd.read_csv(configuration / "evaluation" / f"fold_{fold}.csv")
        assert {"case", "fold", "label", "label_value", "dice", "iou", "hd95", "asd",
                "ref_volume_ml", "pred_volume_ml", "tp", "fp", "fn"} <= set(table.columns)
        assert (table["hd95"].dropna() >= 0).all()
        assert (table.loc[table["label"] == "whole tumour", "ref_volume_ml"] > 0).all()
        assert sorted(table["case"].unique()) == split["val"]
        assert set(table["label"]) == {"edema", "non-enhancing tumour", "enhancing tumour", "whole tumour"}
    assert (configuration / "predictions" / "test" / "DEMO_006.nii.gz").is_file()
    assert (results / "predictions" / "test_postprocessed" / "DEMO_006.nii.gz").is_file()
    postprocessing = json.loads((configuration / "postprocessing.json").read_text())
    assert postprocessing["cases"] == 6 and postprocessing["steps"][0]["step"] == "all foreground"
    assert postprocessing["apply"] == [{"operation": s["operation"], "labels": s["labels"]}
                                       for s in postprocessing["steps"] if s["kept"]]
    summary = json.loads((configuration / "evaluation" / "summary.json").read_text())
    assert set(summary["labels"]) == {"edema", "non-enhancing tumour", "enhancing tumour"}
    assert "whole tumour" in summary["regions"]
    assert summary["mean_foreground_dice"]["all"] is not None
    assert summary["labels"]["edema"]["all"]["hd95"]["n_cases"] == 6
    assert (results / "logs" / "train" / "3d_fullres" / "fold_0.log").is_file()
    # One configuration: chosen without a contest, scored as the evaluation scores it.
    best = json.loads((results / "best_configuration.json").read_text())
    assert best["best"] == {"name": "3d_fullres", "configurations": ["3d_fullres"], "ensemble": False,
                            "foreground_dice": best["candidates"][0]["foreground_dice"]}
    assert [c["name"] for c in best["candidates"]] == ["3d_fullres"] and best["cases"] == 6
    dice = {name: summary["labels"][name]["all"]["dice"]["mean"] for name in summary["labels"]}
    for name, value in best["candidates"][0]["dice"].items():
        assert value == pytest.approx(dice[name], abs=1e-6), name


def test_predictions_sit_in_the_raw_geometry(finished_run):
    tmp, _ = finished_run
    results, data = tmp / "results" / "demo", tmp / "data" / "demo"
    predictions = sorted([*(results / "3d_fullres" / "predictions").glob("*/*.nii.gz"),
                          *(results / "predictions").glob("*/*.nii.gz")])
    assert len(predictions) == 8  # 6 validation cases, the test case and it postprocessed
    for path in predictions:
        folder = "imagesTs" if path.parent.name.startswith("test") else "imagesTr"
        raw = nib.load(data / folder / path.name)
        pred = nib.load(path)
        assert pred.shape == raw.shape[:3]
        np.testing.assert_allclose(pred.affine, raw.affine, atol=1e-5)
        assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(raw.affine)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}


def test_report_builds(finished_run):
    tmp, config = finished_run
    result = snakemake(tmp, config, "--report", str(tmp / "report.html"))
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp / "report.html").stat().st_size > 100_000


def test_second_run_does_nothing(finished_run):
    tmp, config = finished_run
    assert planned_jobs(snakemake(tmp, config, "--dry-run")) == {}


def test_changing_overlap_reruns_prediction_and_evaluation_only(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "overlap.yaml", predict__overlap=0.5)
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert set(jobs) == {"predict", "ensemble", "evaluate", "postprocessing", "select_configuration",
                         "postprocess_test", "report", "all"}
    assert jobs["predict"] == 2 and jobs["evaluate"] == 2


def test_a_new_postprocessing_reruns_its_application_not_the_networks(finished_run):
    tmp, config = finished_run
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run", "--forcerun", "postprocessing"))
    assert set(jobs) == {"postprocessing", "postprocess_test", "report", "all"}


def test_predicting_with_the_best_checkpoint_reruns_prediction_and_evaluation_only(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "best.yaml", predict__checkpoint="best")
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert set(jobs) == {"predict", "ensemble", "evaluate", "postprocessing", "select_configuration",
                         "postprocess_test", "report", "all"}
    assert jobs["predict"] == 2


def test_the_exported_archive_predicts_the_test_set_as_the_run(finished_run):
    """`snakemake export` (not part of `all`) writes model.zip, which predicts imagesTs alone, in
    another folder, exactly as the `ensemble` and `postprocess_test` rules did (the archive carries
    the run's postprocessing.json, which `predict` applies)."""
    tmp, config = finished_run
    results = tmp / "results" / "demo"
    result = snakemake(tmp, config, "export")
    assert result.returncode == 0, result.stderr[-5000:]
    fresh = tmp / "elsewhere"
    fresh.mkdir()
    (fresh / "model.zip").write_bytes((results / "3d_fullres" / "model.zip").read_bytes())
    predicted = subprocess.run(
        [sys.executable, "-m", "unet", "predict", "-i", str(tmp / "data" / "demo" / "imagesTs"), "-o", "out",
         "-m", "model.zip", "--overlap", "0.25", "--batch-size", "4"],
        cwd=fresh, capture_output=True, text=True, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "postprocessing (postprocessing.json): " in predicted.stdout
    expected = sorted((results / "predictions" / "test_postprocessed").glob("*.nii.gz"))
    assert [p.name for p in expected] == sorted(p.name for p in (fresh / "out").glob("*.nii.gz"))
    for path in expected:
        np.testing.assert_array_equal(np.asarray(nib.load(fresh / "out" / path.name).dataobj),
                                      np.asarray(nib.load(path).dataobj))
    assert planned_jobs(snakemake(tmp, config, "--dry-run")) == {}


def test_the_inference_benchmark_times_the_network_that_predicts(tmp_path):
    """benchmark_predict measures predict.checkpoint's network, as the prediction rules use it (a
    dry run from an empty folder)."""
    for checkpoint, name in (("final", "model.keras"), ("best", "model_best.keras")):
        config = _write_config(tmp_path, f"{checkpoint}.yaml", predict__checkpoint=checkpoint)
        result = snakemake(tmp_path, config, "--dry-run", "benchmark_predict")
        assert result.returncode == 0, result.stderr[-3000:]
        block = (result.stdout + result.stderr).split("rule benchmark_predict:")[1]
        inputs = block.split("input: ")[1].splitlines()[0].split(", ")
        assert inputs[0] == str(tmp_path / "results" / "demo" / "3d_fullres" / "fold_0" / name)


def test_changing_the_empty_convention_reruns_evaluation_only(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "empty.yaml", evaluate__empty="one")
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert set(jobs) == {"evaluate", "report", "all"}
    assert jobs["evaluate"] == 2


def test_changing_learning_rate_reruns_training_onward_not_preprocessing(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "lr.yaml", train__learning_rate=0.01)
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert set(jobs) == {"train", "predict", "ensemble", "evaluate", "postprocessing", "select_configuration",
                         "postprocess_test", "report", "all"}
    assert jobs["train"] == 2


def test_spelling_out_the_recipes_own_values_reruns_nothing(finished_run):
    """The params carry the recipe resolved (unet.training.settings.resolved_recipe)."""
    tmp, _ = finished_run
    config = _write_config(tmp, "recipe.yaml", train__recipe="ours", train__optimizer="adam",
                           train__learning_rate=0.003)
    assert planned_jobs(snakemake(tmp, config, "--dry-run")) == {}


def test_resume_switch_does_not_invalidate_finished_folds(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "resume.yaml", train__resume=True)
    assert planned_jobs(snakemake(tmp, config, "--dry-run")) == {}


def test_changing_a_plan_override_reruns_from_planning(finished_run):
    tmp, _ = finished_run
    config = _write_config(tmp, "plan.yaml", plan__batch_size=4)
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert {"plan", "preprocess", "shard", "train"} <= set(jobs)
    assert "fingerprint" not in jobs and "download" not in jobs


def test_a_typo_in_a_config_key_stops_before_any_job(tmp_path):
    config = _write_config(tmp_path, "typo.yaml")
    text = config.read_text().replace("predict:", "predcit:")
    config.write_text(text)
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert "predcit" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_a_wrong_type_names_the_key(tmp_path):
    config = _write_config(tmp_path, "type.yaml", train__epochs="ten")
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert "'ten' is not of type 'integer'" in result.stdout + result.stderr


@pytest.mark.parametrize("setting,value", [("train__distribution", "mirrored"), ("train__xla", True),
                                           ("train__deterministic", True), ("predict__batch_size", 1)])
def test_execution_settings_rerun_nothing(finished_run, setting, value):
    """Settings that change how a stage runs, not what it writes (unet.config.EXECUTION_SETTINGS)."""
    tmp, _ = finished_run
    config = _write_config(tmp, f"{setting}.yaml", **{setting: value})
    assert planned_jobs(snakemake(tmp, config, "--dry-run")) == {}


def test_more_gpus_per_fold_retrain_it(finished_run):
    """The plan's batch is per GPU: more GPUs change the global batch, hence the model."""
    tmp, _ = finished_run
    config = _write_config(tmp, "gpus.yaml", train__gpus=2)
    jobs = planned_jobs(snakemake(tmp, config, "--dry-run"))
    assert jobs["train"] == 2 and "preprocess" not in jobs


def test_the_reduced_demo_learns(finished_run):
    """The folds' predictions of their validation cases reach a mean foreground Dice that a model
    predicting background scores 0 at, and one label everywhere far below (measured: 0.53 after
    the 500 steps of CONFIG; 0.06 after 3 steps)."""
    tmp, _ = finished_run
    summary = json.loads((tmp / "results" / "demo" / "3d_fullres" / "evaluation" / "summary.json").read_text())
    assert summary["mean_foreground_dice"]["all"] > 0.35
    assert all(dice > 0.3 for dice in summary["mean_foreground_dice"]["folds"].values())
