"""unet.evaluation.report: the report stage from the fold tables, the dataset and the predictions."""

import json
import shutil

import numpy as np
import pytest

from unet.evaluation.evaluate import evaluate_folder, write_table
from unet.evaluation.report import write_report
from unet.io.atomic import write_json
from unet.io.demo import LABELS, generate_demo
from unet.io.msd import load_dataset
from unet.io.images import load_label
from unet.io.nifti import save_nifti

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("data") / "demo", n_train=3, n_test=0, seed=0)


def _postprocessing(path):
    step = {"step": "all foreground", "operation": "keep_largest_component", "labels": [1, 2, 3], "kept": True,
            "foreground_dice_before": 0.5, "foreground_dice_after": 0.75,
            "dice_before": {"edema": 0.5, "enhancing tumour": None},
            "dice_after": {"edema": 0.75, "enhancing tumour": None}}
    write_json(path, {"apply": [{"operation": "keep_largest_component", "labels": [1, 2, 3]}], "steps": [step]})
    return path


def test_report_of_two_folds(demo, tmp_path, capsys):
    """Fold 0 predicts its two cases perfectly, fold 1 predicts nothing for its one case."""
    dataset = load_dataset(demo)
    folds, tables, predictions = [0, 1], [], []
    for fold, cases in zip(folds, (dataset.training[:2], dataset.training[2:])):
        folder = tmp_path / "predictions" / f"fold_{fold}"
        folder.mkdir(parents=True)
        for case in cases:
            if fold == 0:
                shutil.copy(case.label, folder / case.label.name)
            else:
                label, affine = load_label(case.label)
                save_nifti(folder / case.label.name, np.zeros_like(label), affine)
        table = evaluate_folder(folder, {c.id: c.label for c in dataset.training}, LABELS, fold=fold)
        tables.append(tmp_path / f"fold_{fold}.csv")
        write_table(table, tables[-1])
        predictions.append(folder)
    out = tmp_path / "evaluation"

    summary = write_report(tables, predictions, folds, demo, summary_json=out / "summary.json",
                           summary_html=out / "summary.html", dice_png=out / "dice.png",
                           hd95_png=out / "hd95.png", worst_png=out / "worst_cases.png",
                           postprocessing=_postprocessing(tmp_path / "postprocessing.json"))

    assert json.loads((out / "summary.json").read_text()) == summary
    dice = summary["mean_foreground_dice"]
    assert dice["folds"] == {"0": pytest.approx(1.0), "1": pytest.approx(0.0)}
    assert dice["all"] == pytest.approx(2 / 3)  # per label: Dice 1, 1 and 0
    assert summary["labels"]["edema"]["all"]["dice"]["n_cases"] == 3
    page = (out / "summary.html").read_text()
    assert "edema" in page
    # The postprocessing steps tried, with the Dice before -> after each.
    assert "Postprocessing" in page and "0.5000 -&gt; 0.7500" in page and "n/a -&gt; n/a" in page
    for name in ("dice.png", "hd95.png", "worst_cases.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    log = capsys.readouterr().out
    worst = log.split("worst cases:\n")[1].splitlines()
    assert worst[1].split() == ["DEMO_002", "1", "0.0"]  # the worst first, with its fold
    assert "mean foreground Dice across folds: 0.66" in log
