"""A dataset in NRRD and one in MetaImage (dataset.json `file_ending`) go through the whole
workflow: validate, preprocess, train (a few steps), predict, evaluate, postprocess, report. Their grids are
oblique; every prediction is written in the dataset's format, and SimpleITK reads it on the grid
of its raw image."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from unet.io.demo import generate_demo
from unet.io.images import read_image, save_image

pytestmark = pytest.mark.workflow
_spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
_workflow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_workflow)  # its reduced demo config and helpers


def oblique_dataset(root: Path, ending: str) -> Path:
    """The demo (4 training cases, 1 test case) in the format of `ending`, each grid turned about
    two axes, as scanners tilt the slices."""
    generate_demo(root, n_train=4, n_test=1, seed=0, file_ending=ending)
    a, b = 0.3, 0.15
    turn = np.eye(4)
    turn[:3, :3] = (np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                    @ np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]))
    for path in sorted(root.glob(f"*/*{ending}")):
        data, affine = read_image(path)
        save_image(path, data, turn @ affine)
    return root


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_a_dataset_in_another_format_runs_through_the_workflow(tmp_path, ending):
    task = f"Oblique{ending.strip('.').upper()}"
    data = oblique_dataset(tmp_path / "data" / task, ending)
    config = _workflow._write_config(tmp_path, "config.yaml", train__epochs=1, train__steps_per_epoch=5)
    settings = yaml.safe_load(config.read_text())
    settings.update(task=task, folds=[0])
    config.write_text(yaml.safe_dump(settings))

    result = _workflow.snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-5000:]

    results = tmp_path / "results" / task
    assert json.loads((results / "dataset.ok").read_text())["file_ending"] == ending
    validation = json.loads((results / "splits.json").read_text())[0]["val"]
    configuration = results / "3d_fullres"
    predictions = {folder: sorted(p for p in (configuration / "predictions" / folder).iterdir()
                                  if not p.name.startswith("."))  # but Snakemake's timestamp
                   for folder in ("fold_0", "test")}
    predictions["test_postprocessed"] = sorted(p for p in (results / "predictions" / "test_postprocessed").iterdir()
                                               if not p.name.startswith("."))
    assert [p.name for p in predictions["fold_0"]] == [f"{case}{ending}" for case in sorted(validation)]
    assert [p.name for p in predictions["test"]] == [p.name for p in predictions["test_postprocessed"]] \
        == [f"DEMO_004{ending}"]
    assert json.loads((configuration / "postprocessing.json").read_text())["cases"] == len(validation)
    table = pd.read_csv(configuration / "evaluation" / "fold_0.csv")
    assert sorted(table["case"].unique()) == validation and table["dice"].notna().any()
    assert (configuration / "evaluation" / "summary.json").is_file()
    assert (configuration / "evaluation" / "worst_cases.png").is_file()

    for path in predictions["fold_0"] + predictions["test"] + predictions["test_postprocessed"]:
        raw = sitk.ReadImage(str(data / ("imagesTr" if path.parent.name == "fold_0" else "imagesTs") / path.name))
        prediction = sitk.ReadImage(str(path))
        assert prediction.GetSize() == raw.GetSize(), path
        for ours, theirs in ((prediction.GetSpacing(), raw.GetSpacing()), (prediction.GetOrigin(), raw.GetOrigin()),
                             (prediction.GetDirection(), raw.GetDirection())):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12, err_msg=str(path))
        assert not np.isclose(np.abs(np.reshape(raw.GetDirection(), (3, 3))), 1.0).any()  # oblique
        assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2, 3}
