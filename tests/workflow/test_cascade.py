"""3d_lowres and the 3d_cascade_fullres that refines it, through the workflow, trained briefly.

nnU-Net plans them for images much larger than a patch. The reduced demo's images are small, so
the run plans for a small GPU (`plan.gpu_memory_gb`: the patch the planner can afford then covers
under a quarter of the median image), which makes the demo "large" to the planner, and trains
tiny networks. The cascade trains on 3d_lowres' cross-validation predictions (both folds), predicts
its validation cases from them and the test set from 3d_lowres' test-set predictions.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.workflow

LOWRES, CASCADE = "3d_lowres", "3d_cascade_fullres"


def _workflow_tests():
    spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOW = _workflow_tests()


@pytest.fixture(scope="module")
def cascade_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cascade")
    path = WORKFLOW._write_config(tmp, "config.yaml")
    config = yaml.safe_load(path.read_text())
    # 1.53 GiB: the planned 3d_fullres patch holds under a quarter of the demo's median image.
    config["plan"].update(gpu_memory_gb=1.53, **{LOWRES: {"patch_size": [16, 16, 16], "filters": 4, "batch_size": 2}})
    config["configurations"] = [LOWRES, CASCADE]
    path.write_text(yaml.safe_dump(config))
    result = WORKFLOW.snakemake(tmp, path)
    assert result.returncode == 0, result.stderr[-5000:]
    return tmp, path


def test_lowres_is_planned_and_preprocessed_at_its_coarser_spacing(cascade_run):
    tmp, _ = cascade_run
    results = tmp / "results" / "demo"
    plans = json.loads((results / "plans.json").read_text())
    assert list(plans["configurations"]) == ["2d", LOWRES, CASCADE]
    lowres = plans["configurations"][LOWRES]
    assert all(c > f for c, f in zip(lowres["spacing"], plans["spacing"]))
    for case in sorted(p.name.removesuffix("_seg.npy") for p in (results / "preprocessed").glob("*_seg.npy")):
        full = np.load(results / "preprocessed" / f"{case}.npy", mmap_mode="r")
        low = np.load(results / "preprocessed_3d_lowres" / f"{case}.npy", mmap_mode="r")
        assert np.prod(low.shape[:3]) * 2 < np.prod(full.shape[:3]) and low.shape[3] == full.shape[3] == 2
        # The cascade's extra input: 3d_lowres' segmentation of the case on the full-resolution grid.
        previous = np.load(results / CASCADE / "previous" / f"{case}.npy")
        assert previous.shape == full.shape[:3] and previous.max() <= 3


def test_the_cascade_learns_and_both_predict_in_the_raw_geometry(cascade_run):
    tmp, _ = cascade_run
    results, data = tmp / "results" / "demo", tmp / "data" / "demo"
    for configuration in (LOWRES, CASCADE):
        info = json.loads((results / configuration / "fold_0" / "model.json").read_text())
        assert info["configuration"] == configuration
        summary = json.loads((results / configuration / "evaluation" / "summary.json").read_text())
        # A model predicting background everywhere scores 0.
        assert summary["labels"]["edema"]["all"]["dice"]["mean"] > 0.5, configuration
        for path in sorted((results / configuration / "predictions").glob("*/*.nii.gz")):
            raw = nib.load(data / ("imagesTs" if path.parent.name == "test" else "imagesTr") / path.name)
            assert nib.load(path).shape == raw.shape[:3], path
            np.testing.assert_allclose(nib.load(path).affine, raw.affine, atol=1e-5)


def test_the_choice_covers_both_and_their_pair(cascade_run):
    tmp, config = cascade_run
    results = tmp / "results" / "demo"
    best = json.loads((results / "best_configuration.json").read_text())
    assert [c["name"] for c in best["candidates"]] == [LOWRES, CASCADE, f"{LOWRES}+{CASCADE}"]
    scores = {c["name"]: c["foreground_dice"] for c in best["candidates"]}
    assert best["best"]["name"] == max(scores, key=scores.get)
    assert sorted(p.name for p in (results / "predictions" / "test_postprocessed").glob("*.nii.gz")) \
        == ["DEMO_006.nii.gz"]
    assert WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run")) == {}
