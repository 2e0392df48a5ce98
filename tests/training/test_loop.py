"""The training loop on a 4-case demo: outputs of a fold, resume, and a fresh restart."""

import contextlib
import io
import json
import re
from dataclasses import replace
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet.training.loop import train_fold
from unet.training.settings import TrainSettings

STEPS = 3
SETTINGS = TrainSettings(epochs=2, steps_per_epoch=STEPS, validation_patches=4, seed=0)
# Keras' own weight saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
LOG_KEYS = {"epoch", "loss", "val_dice", "val_dice_mean", "ema_val_dice", "learning_rate",
            "epoch_time_s", "patches_per_s"}


def _train(ws, out_dir, settings):
    """Train; return (rows, log file rows, epochs this call trained (1-based), checkpoint state)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rows = train_fold(ws.plan, settings, ws.shard_dir, ws.train_ids, ws.val_ids, out_dir,
                          out_dir / "model.keras", out_dir / "training_curves.png", out_dir / "model_best.keras")
    log_rows = [json.loads(line) for line in (out_dir / "training_log.jsonl").read_text().splitlines()]
    trained = [int(n) for n in re.findall(r"^epoch (\d+)/\d+:", stdout.getvalue(), re.M)]
    reader = tf.train.load_checkpoint(str(out_dir / "checkpoints" / "last"))
    state = {"epoch": int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
             "iterations": int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))}
    return SimpleNamespace(rows=rows, log=log_rows, trained=trained, state=state, stdout=stdout.getvalue())


@pytest.fixture(scope="module")
def runs(demo_workspace, tmp_path_factory):
    """In one fold folder: 1 epoch; resumed to 2 epochs; then a fresh 2-epoch run over it."""
    out_dir = tmp_path_factory.mktemp("fold_0")
    first = _train(demo_workspace, out_dir, replace(SETTINGS, epochs=1))
    resumed = _train(demo_workspace, out_dir, replace(SETTINGS, resume=True))
    fresh = _train(demo_workspace, out_dir, SETTINGS)
    return SimpleNamespace(out_dir=out_dir, first=first, resumed=resumed, fresh=fresh)


def test_fold_outputs(runs, demo_workspace):
    out_dir, plan = runs.out_dir, demo_workspace.plan
    model = keras.saving.load_model(str(out_dir / "model.keras"), compile=False)
    x = np.zeros((1, *plan.patch_size, plan.num_channels), np.float32)
    assert model.predict_on_batch(x).shape == (1, *plan.patch_size, plan.num_classes)

    log = runs.fresh.log
    assert [row["epoch"] for row in log] == [0, 1]
    assert log == runs.fresh.rows
    for row in log:
        assert LOG_KEYS <= set(row)
        assert set(row["val_dice"]) == {"edema", "non-enhancing tumour", "enhancing tumour"}
        assert all(0.0 <= d <= 1.0 for d in row["val_dice"].values())
        assert np.isfinite(row["loss"]) and row["loss"] > 0 and row["patches_per_s"] > 0
    assert log[0]["learning_rate"] == pytest.approx(SETTINGS.learning_rate)
    assert log[1]["learning_rate"] == pytest.approx(SETTINGS.learning_rate * 0.5 ** 0.9)

    assert (out_dir / "checkpoints" / "last" / "checkpoint").is_file()
    assert runs.fresh.state == {"epoch": 2, "iterations": 2 * STEPS}
    assert (out_dir / "checkpoints" / "best.weights.h5").is_file()
    best = keras.saving.load_model(str(out_dir / "model_best.keras"), compile=False)
    assert best.predict_on_batch(x).shape == (1, *plan.patch_size, plan.num_classes)
    assert list((out_dir / "tensorboard").glob("events.out.tfevents.*"))
    png = out_dir / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).ndim == 3
    assert not list(out_dir.glob(".*"))  # no temporary files left behind


def test_resume_continues_after_the_last_checkpoint(runs):
    first, resumed = runs.first, runs.resumed
    assert first.trained == [1] and first.state == {"epoch": 1, "iterations": STEPS}
    assert "resuming from" in resumed.stdout
    assert resumed.trained == [2]  # only the missing epoch
    assert [row["epoch"] for row in resumed.log] == [0, 1]
    assert resumed.log[0] == first.log[0]  # the first run's row is kept as it was
    assert resumed.log[1]["learning_rate"] == pytest.approx(SETTINGS.learning_rate * 0.5 ** 0.9)
    # The optimizer state continued: its step counter counts both runs' steps.
    assert resumed.state == {"epoch": 2, "iterations": 2 * STEPS}


def test_without_resume_a_fold_starts_over(runs):
    assert runs.fresh.trained == [1, 2]
    assert "resuming" not in runs.fresh.stdout
    assert runs.fresh.log[0] != runs.resumed.log[0]


def _tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries in a TensorBoard folder's event files."""
    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def test_tensorboard_events_hold_the_logged_scalars(runs):
    scalars = _tensorboard_scalars(runs.out_dir / "tensorboard")
    log = runs.fresh.log
    names = [f"val_dice/{name}" for name in log[0]["val_dice"]]
    keys = ["loss", "val_dice_mean", "ema_val_dice", "learning_rate", "patches_per_s", "epoch_time_s"]
    assert set(keys + names) <= set(scalars)
    for key in keys:
        assert scalars[key] == pytest.approx({row["epoch"]: row[key] for row in log}, rel=1e-6)
    for name in log[0]["val_dice"]:
        assert scalars[f"val_dice/{name}"] == pytest.approx({row["epoch"]: row["val_dice"][name] for row in log},
                                                            rel=1e-6)


def test_each_epoch_records_the_machine_it_ran_on(runs):
    """CPU model, vector extensions, threads, oneDNN and XLA: what a logged speed depends on."""
    from unet.runtime import machine_info

    expected = machine_info(1)
    for row in runs.fresh.log:
        runtime = row["runtime"]
        assert runtime["cpu"] == expected["cpu"] and runtime["vector_extensions"] == expected["vector_extensions"]
        assert runtime["onednn"] == expected["onednn"] and runtime["xla"] == "off"
        assert runtime["threads"] >= 1 and runtime["gpus"] == 0 and runtime["replicas"] == 1


def test_the_history_is_kept_with_the_checkpoint(runs):
    """Snakemake deletes an interrupted job's training_log.jsonl before rerunning it; the copy beside
    the checkpoint is what a resumed run continues."""
    history = runs.out_dir / "checkpoints" / "training_log.jsonl"
    assert [json.loads(line) for line in history.read_text().splitlines()] == runs.fresh.log


def test_a_resume_keeps_the_epochs_whose_log_snakemake_deleted(demo_workspace, tmp_path):
    first = _train(demo_workspace, tmp_path, replace(SETTINGS, epochs=1))
    (tmp_path / "training_log.jsonl").unlink()  # what --rerun-incomplete does to a declared output
    resumed = _train(demo_workspace, tmp_path, replace(SETTINGS, resume=True))
    assert resumed.trained == [2]
    assert [row["epoch"] for row in resumed.log] == [0, 1] and resumed.log[0] == first.log[0]


def test_fold_all_trains_on_every_case_without_validation(demo_workspace, tmp_path):
    """nnU-Net's fold `all`: no validation cases, so no Dice in the log or TensorBoard; the curves
    show the loss alone and the best checkpoint is the final weights."""
    ws = demo_workspace
    rows = train_fold(ws.plan, SETTINGS, ws.shard_dir, ws.train_ids + ws.val_ids, [], tmp_path,
                      tmp_path / "model.keras", tmp_path / "training_curves.png")
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert log == rows and [row["epoch"] for row in log] == [0, 1]
    for row in log:
        assert set(row) == LOG_KEYS - {"val_dice", "val_dice_mean", "ema_val_dice"} | {"runtime"}
        assert np.isfinite(row["loss"]) and row["loss"] > 0
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert {"loss", "learning_rate"} <= set(scalars) and not any("dice" in tag for tag in scalars)
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "training_curves.png").ndim == 3

    final = keras.saving.load_model(str(tmp_path / "model.keras"), compile=False)
    from unet.training.objective import Objective

    best = Objective(ws.plan, SETTINGS).build_model()
    best.load_weights(tmp_path / "checkpoints" / "best.weights.h5")
    x = np.random.default_rng(0).normal(size=(1, *ws.plan.patch_size, ws.plan.num_channels)).astype(np.float32)
    np.testing.assert_array_equal(final.predict_on_batch(x),
                                  Objective(ws.plan, SETTINGS).inference_model(best).predict_on_batch(x))


def test_the_best_epoch_is_saved_as_a_prediction_model(demo_workspace, tmp_path, monkeypatch):
    """The train stage writes model_best.keras, the weights of the epoch with the best EMA of the
    validation Dice, and model.json naming both checkpoints' epochs. The validation Dice is fixed
    here so that the best epoch is the first of three, not the last."""
    from unet.inference.model_info import ModelInfo, file_sha256
    from unet.training.loop import FoldTrainer
    from unet.training.multinode import TrainJob, train_worker
    from unet.training.objective import Objective

    dice = iter([0.9, 0.1, 0.1])
    monkeypatch.setattr(FoldTrainer, "_validate",
                        lambda self, predict, images, segs: dict.fromkeys(self.labels, next(dice)))
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(demo_workspace.plan.to_json()))
    fold = tmp_path / "fold_0"
    settings = replace(SETTINGS, epochs=3, regions={"core": [2, 3], "enhancing": [3]})
    train_worker(TrainJob(plans=str(plans), shards=str(demo_workspace.shard_dir), train=tuple(demo_workspace.train_ids),
                          val=tuple(demo_workspace.val_ids), out_dir=str(fold), model=str(fold / "model.keras"),
                          curves=None, settings=settings))

    info = ModelInfo.load(fold / "model.json")
    assert info.checkpoints == {"final": {"file": "model.keras", "epoch": 2},
                                "best": {"file": "model_best.keras", "epoch": 0, "ema_val_dice": pytest.approx(0.9)}}
    assert info.regions == {"core": [2, 3], "enhancing": [3]} and info.plans_sha256 == file_sha256(plans)
    assert info.configuration == "3d_fullres"
    assert info.train["epochs"] == 3 and info.train["regions"] == info.regions and "resume" not in info.train
    best = keras.saving.load_model(str(fold / "model_best.keras"), compile=False)
    final = keras.saving.load_model(str(fold / "model.keras"), compile=False)
    objective = Objective(demo_workspace.plan, settings)
    trained = objective.build_model()
    trained.load_weights(fold / "checkpoints" / "best.weights.h5")
    expected = objective.inference_model(trained).get_weights()
    assert len(best.get_weights()) == len(expected)
    for got, want in zip(best.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    # Two more epochs changed the weights: the final model is another network.
    assert any(not np.array_equal(a, b) for a, b in zip(best.get_weights(), final.get_weights()))
    assert best.outputs[0].shape[-1] == 2  # one sigmoid channel per region
