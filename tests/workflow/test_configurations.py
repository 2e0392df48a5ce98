"""Several configurations through the workflow: the reduced demo of test_workflow.py trained as
3d_fullres, then 2d added. Adding a configuration trains only that one; both are cross-validated,
the better one or their pair ensemble is chosen (best_configuration.json) and predicts the test
set; the 2d network predicts every slice back into the raw geometry and learns.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.workflow


def _workflow_tests():
    spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOW = _workflow_tests()
BOTH = ["2d", "3d_fullres"]


def _config(tmp: Path, name: str, configurations) -> Path:
    path = WORKFLOW._write_config(tmp, name)
    config = yaml.safe_load(path.read_text())
    # The 2d network sized for a CPU, as config.yaml's demo does.
    config["plan"]["2d"] = {"filters": 4, "batch_size": 8}
    config["configurations"] = configurations
    path.write_text(yaml.safe_dump(config))
    return path


def _trained_configurations(result) -> list[str]:
    """The configuration wildcard of every `train` job of a dry run."""
    text = result.stdout + result.stderr
    blocks = re.findall(r"^rule train:\n(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    return sorted(re.search(r"configuration=([\w]+)", block).group(1) for block in blocks)


@pytest.fixture(scope="module")
def two_configurations(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("configurations")
    first = WORKFLOW.snakemake(tmp, _config(tmp, "fullres.yaml", ["3d_fullres"]))
    assert first.returncode == 0, first.stderr[-5000:]
    config = _config(tmp, "both.yaml", BOTH)
    dry = WORKFLOW.snakemake(tmp, config, "--dry-run")
    result = WORKFLOW.snakemake(tmp, config)
    assert result.returncode == 0, result.stderr[-5000:]
    return tmp, config, dry


def test_adding_a_configuration_trains_only_that_one(two_configurations):
    _, _, dry = two_configurations
    jobs = WORKFLOW.planned_jobs(dry)
    assert _trained_configurations(dry) == ["2d", "2d"]  # its two folds; 3d_fullres' stay
    assert {"preprocess", "shard", "split", "plan"}.isdisjoint(jobs)  # 2d slices 3d_fullres' data
    # 3d_fullres' folds predict again, once, to save the probabilities the pair ensemble averages;
    # the pair's jobs join the DAG after the choice (a checkpoint), so a dry run does not list them.
    assert jobs["predict"] == 4 and jobs["select_configuration"] == 1


def test_the_choice_is_the_best_candidate_and_predicts_the_test_set(two_configurations):
    tmp, config, _ = two_configurations
    results = tmp / "results" / "demo"
    best = json.loads((results / "best_configuration.json").read_text())
    scores = {c["name"]: c["foreground_dice"] for c in best["candidates"]}
    assert list(scores) == ["2d", "3d_fullres", "2d+3d_fullres"]
    assert best["best"]["name"] == max(scores, key=scores.get) and best["cases"] == 6
    assert "<b>" + best["best"]["name"] + "</b>" in (results / "configurations.html").read_text()
    # Every candidate has its postprocessing chosen on its own cross-validation predictions.
    winner = results / ("ensembles" if best["best"]["ensemble"] else "") / best["best"]["name"]
    for folder in (results / "2d", results / "3d_fullres", results / "ensembles" / "2d+3d_fullres"):
        assert json.loads((folder / "postprocessing.json").read_text())["cases"] == 6, folder
    log = (results / "logs" / "predict" / "test_postprocessed.log").read_text()
    assert f"of {winner / 'predictions' / 'test'}, postprocessing of {winner / 'postprocessing.json'}" in log
    final = sorted((results / "predictions" / "test_postprocessed").glob("*.nii.gz"))
    assert [p.name for p in final] == ["DEMO_006.nii.gz"]
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run")) == {}


def test_the_pair_ensemble_averages_the_two_probabilities(two_configurations):
    tmp, _, _ = two_configurations
    results = tmp / "results" / "demo"
    pair = results / "ensembles" / "2d+3d_fullres" / "predictions" / "fold_0"
    cases = sorted(p.name.removesuffix(".nii.gz") for p in pair.glob("*.nii.gz"))
    assert cases == json.loads((results / "splits.json").read_text())[0]["val"]
    for case in cases:
        probabilities = []
        for configuration in BOTH:
            with np.load(results / configuration / "predictions" / "fold_0" / f"{case}.npz") as npz:
                probabilities.append(npz["probabilities"])
                values = npz["label_values"]
        expected = values[np.argmax((probabilities[0] + probabilities[1]) / 2, axis=0)]
        np.testing.assert_array_equal(np.asarray(nib.load(pair / f"{case}.nii.gz").dataobj), expected)


def test_the_2d_network_learned_and_predicts_in_the_raw_geometry(two_configurations):
    tmp, _, _ = two_configurations
    results, data = tmp / "results" / "demo", tmp / "data" / "demo"
    info = json.loads((results / "2d" / "fold_0" / "model.json").read_text())
    assert info["configuration"] == "2d"
    summary = json.loads((results / "2d" / "evaluation" / "summary.json").read_text())
    # Predicting background everywhere scores 0; 500 steps of the tiny 2d network reach more.
    assert summary["labels"]["edema"]["all"]["dice"]["mean"] > 0.5
    for path in sorted((results / "2d" / "predictions").glob("*/*.nii.gz")):
        raw = nib.load(data / ("imagesTs" if path.parent.name == "test" else "imagesTr") / path.name)
        prediction = nib.load(path)
        assert prediction.shape == raw.shape[:3], path
        np.testing.assert_allclose(prediction.affine, raw.affine, atol=1e-5)
