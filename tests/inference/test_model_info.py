"""fold_{k}/model.json (unet/inference/model_info.py): what the train stage records, and finding
the folds' networks; no TensorFlow."""

import json

import pytest

from unet.inference.errors import InputError
from unet.inference.model_info import ModelInfo, best_row, load_model_set, model_paths, write_model_info


def test_the_best_epoch_is_the_last_that_raised_the_ema():
    rows = [{"epoch": 0, "ema_val_dice": 0.2}, {"epoch": 1, "ema_val_dice": 0.5},
            {"epoch": 2, "ema_val_dice": 0.5}, {"epoch": 3, "ema_val_dice": 0.4}]
    assert best_row(rows)["epoch"] == 1  # a tie does not replace the kept weights (the loop's `>`)
    # Fold all has no validation: its best checkpoint is its final one.
    assert best_row([{"epoch": 0}, {"epoch": 1}])["epoch"] == 1


def test_model_json_of_fold_all(tmp_path):
    plans = tmp_path / "plans.json"
    plans.write_text("{}")
    write_model_info(tmp_path / "fold_all", plans=plans, regions=None, rows=[{"epoch": 0}, {"epoch": 1}],
                     train={"epochs": 2})
    info = ModelInfo.load(tmp_path / "fold_all" / "model.json")
    assert info.checkpoints["best"] == {"file": "model_best.keras", "epoch": 1, "ema_val_dice": None}
    assert info.regions is None and info.configuration == "3d_fullres" and info.train == {"epochs": 2}


def test_every_fold_with_the_checkpoints_network(tmp_path):
    for fold, files in (("0", ("model.keras", "model_best.keras")), ("2", ("model.keras",)), ("10", ("model.keras",)),
                        ("all", ("model.keras", "model_best.keras")), ("x", ("model.keras",))):
        (tmp_path / f"fold_{fold}").mkdir()
        for name in files:
            (tmp_path / f"fold_{fold}" / name).write_bytes(b"")
    assert model_paths(tmp_path) == [tmp_path / f"fold_{k}" / "model.keras" for k in (0, 2, 10, "all")]
    assert model_paths(tmp_path, checkpoint="best") == [tmp_path / f"fold_{k}" / "model_best.keras" for k in (0, "all")]
    assert model_paths(tmp_path, ["all", 0]) == [tmp_path / "fold_all" / "model.keras", tmp_path / "fold_0" / "model.keras"]
    with pytest.raises(InputError, match=r"fold_2/model_best.keras: no such model"):
        model_paths(tmp_path, [2], checkpoint="best")
    with pytest.raises(InputError, match="checkpoint 'last': expected one of final, best"):
        model_paths(tmp_path, checkpoint="last")


def test_a_model_json_from_elsewhere_is_refused(tmp_path):
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "plans.json").write_text("{}")
    (tmp_path / "fold_0" / "model.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match=r"fold_0/model.json: not a model description written by the train stage"):
        load_model_set(tmp_path / "plans.json", [tmp_path / "fold_0" / "model.keras"])
    (tmp_path / "fold_0" / "model.json").write_text(json.dumps({"format": "unet-model", "version": 99}))
    with pytest.raises(InputError, match="version 99 is newer than this package reads"):
        load_model_set(tmp_path / "plans.json", [tmp_path / "fold_0" / "model.keras"])
