"""Fine-tuning (`train.init_weights`): which model file a setting names, what is copied layer by
layer, new heads for another label set, an error naming the layers of another topology, and a
fine-tuned model that learns."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from unet.training.distribution import Distribution
from unet.training.loop import train_fold
from unet.training.objective import Objective
from unet.training.optimizers import make_optimizer
from unet.training.pretrained import initial_weights, load_initial_weights
from unet.training.settings import TrainSettings
from unet.training.steps import make_train_step

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
TUMOUR = {0: "background", 1: "tumour"}  # a label set other than the demo's four


def _learning_tests():
    spec = importlib.util.spec_from_file_location("_learning_tests", Path(__file__).with_name("test_learning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEARNING = _learning_tests()


def _save_source(plan, path: Path, seed: int = 1, deep_supervision: bool = True, steps: int = 0) -> keras.Model:
    """A model of `plan` (trained `steps` steps on nested spheres) saved as training saves it: the
    inference model. Returns the training model."""
    keras.utils.set_random_seed(seed)
    objective = Objective(plan, TrainSettings(deep_supervision=deep_supervision))
    model = objective.build_model()
    if steps:
        settings = TrainSettings()
        step = make_train_step(model, make_optimizer(settings), objective.loss, Distribution())
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            step(LEARNING.nested_spheres(plan, plan.batch_size, rng))
    objective.inference_model(model).save(path)
    return model


# -- which file ------------------------------------------------------------------------------------

def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_model_file_or_a_fold_folder_names_itself(tmp_path):
    model = _touch(tmp_path / "run" / "fold_0" / "model.keras")
    assert initial_weights(model) == model
    assert initial_weights(model.parent) == model


def test_a_results_folder_gives_fold_all_else_its_only_fold(tmp_path):
    run = tmp_path / "run"
    only = _touch(run / "fold_3" / "model.keras")
    _touch(run / "fold_1" / "training_log.jsonl")  # a fold without a model does not count
    assert initial_weights(run) == only
    _touch(run / "fold_0" / "model.keras")
    with pytest.raises(ValueError, match="fold_0, fold_3 and no fold_all; give the one"):
        initial_weights(run)
    every = _touch(run / "fold_all" / "model.keras")
    assert initial_weights(run) == every


def test_a_run_of_several_configurations_gives_its_only_trained_one_else_asks(tmp_path):
    run = tmp_path / "run"
    _touch(run / "plans.json")
    only = _touch(run / "3d_fullres" / "fold_0" / "model.keras")
    _touch(run / "2d" / "fold_0" / "training_log.jsonl")  # not trained (yet): does not count
    assert initial_weights(run) == only
    _touch(run / "2d" / "fold_all" / "model.keras")
    with pytest.raises(ValueError, match=r"configurations 2d, 3d_fullres; give the folder of the one to start "
                                         r"from, e\.g\. .*run/2d"):
        initial_weights(run)
    assert initial_weights(run / "3d_fullres") == only


@pytest.mark.parametrize("name,error,match", [
    ("missing.keras", FileNotFoundError, "no such model file or folder"),
    ("weights.h5", ValueError, "expected a Keras model file"),
    ("empty", FileNotFoundError, "no model.keras and no fold_"),
])
def test_what_is_no_model_says_so(tmp_path, name, error, match):
    if name != "missing.keras":
        (tmp_path / name).mkdir() if name == "empty" else _touch(tmp_path / name)
    with pytest.raises(error, match=match):
        initial_weights(tmp_path / name)


def test_a_model_archive_is_itself_the_input_and_gives_its_fold_all_or_only_fold(demo_workspace, tmp_path):
    """`train.init_weights: model.zip` (python -m unet export): the archive is the file that retrains
    when it changes; its network is loaded after the archive is verified."""
    import json

    from unet.inference.archive import export_archive
    from unet.inference.model_info import write_model_info

    plan = demo_workspace.plan
    run = tmp_path / "run"
    _touch(run / "plans.json").write_text(json.dumps(plan.to_json()))
    sources = {}
    for seed, fold in enumerate(("0", "1", "all")):
        sources[fold] = _save_source(plan, _touch(run / f"fold_{fold}" / "model.keras"), seed=seed,
                                     deep_supervision=False)
        write_model_info(run / f"fold_{fold}", plans=run / "plans.json", regions=None, rows=[{"epoch": 0}], train={})
    x = np.random.default_rng(0).normal(size=(1, *plan.patch_size, plan.num_channels)).astype(np.float32)
    for folds, taken in ((None, "all"), ([1], "1")):
        archive = export_archive(run, tmp_path / f"{taken}.zip", folds=folds)
        assert initial_weights(archive) == archive
        target = Objective(plan, TrainSettings(deep_supervision=False)).build_model()
        transfer = load_initial_weights(target, archive)
        assert transfer.fresh == {} and transfer.source == archive
        np.testing.assert_array_equal(sources[taken].predict_on_batch(x), target.predict_on_batch(x))
    with pytest.raises(ValueError, match="holds the models of folds 0, 1 and no fold all"):
        load_initial_weights(Objective(plan, TrainSettings()).build_model(),
                             export_archive(run, tmp_path / "two.zip", folds=[0, 1]))


# -- what is copied --------------------------------------------------------------------------------

def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def test_another_label_set_gets_new_heads_and_every_other_layer_the_source_weights(demo_workspace, tmp_path):
    plan = demo_workspace.plan
    source = _save_source(replace(plan, labels=TUMOUR), tmp_path / "source.keras")
    keras.utils.set_random_seed(2)
    target = Objective(plan, TrainSettings(deep_supervision=True)).build_model()
    fresh_before = _weights(target)
    transfer = load_initial_weights(target, tmp_path / "source.keras")

    src, dst = _weights(source), _weights(target)
    heads = {name for name in dst if name.startswith("head")}
    assert heads == {"head", "head_ds1"} and set(transfer.fresh) == heads
    assert set(transfer.copied) == set(dst) - heads and len(transfer.copied) > 20
    for name in transfer.copied:  # step 0: the source's weights, exactly
        for a, b in zip(src[name], dst[name]):
            np.testing.assert_array_equal(a, b)
    # The heads: the target's own fresh initialization, in the new shape (4 classes, not 2).
    assert dst["head"][0].shape[-1] == plan.num_classes == 4 and src["head"][0].shape[-1] == 2
    for name in heads:
        for a, b in zip(fresh_before[name], dst[name]):
            np.testing.assert_array_equal(a, b)
    assert "head (weights [(1, 1, 1, 4, 2), (2,)] in the source model, [(1, 1, 1, 4, 4), (4,)] here" in transfer.summary()


def test_the_same_label_set_keeps_the_head_too(demo_workspace, tmp_path):
    plan = demo_workspace.plan
    source = _save_source(plan, tmp_path / "source.keras", deep_supervision=False)
    target = Objective(plan, TrainSettings(deep_supervision=False)).build_model()
    transfer = load_initial_weights(target, tmp_path / "source.keras")
    assert transfer.fresh == {} and "head" in transfer.copied
    x = np.random.default_rng(0).normal(size=(1, *plan.patch_size, plan.num_channels)).astype(np.float32)
    np.testing.assert_array_equal(source.predict_on_batch(x), target.predict_on_batch(x))


@pytest.mark.parametrize("change,names", [
    ({"filters": (4, 8, 32)}, ["enc2a_conv", "enc2a_norm", "up1"]),            # other filters
    ({"modalities": ("T1",)}, ["enc0a_conv"]),                               # other input channels
])
def test_another_topology_stops_naming_the_layers(demo_workspace, tmp_path, change, names):
    plan = demo_workspace.plan
    assert plan.filters == (4, 8, 16) and plan.num_channels == 2
    _save_source(replace(plan, **change), tmp_path / "source.keras")
    target = Objective(plan, TrainSettings()).build_model()
    before = _weights(target)
    with pytest.raises(ValueError, match="cannot be matched") as error:
        load_initial_weights(target, tmp_path / "source.keras")
    for name in names:
        assert f"{name}: weights" in str(error.value)
    assert "enc0b_conv" not in str(error.value)
    assert all(np.array_equal(a, b) for name in before for a, b in zip(before[name], _weights(target)[name]))


def test_a_missing_level_is_named(demo_workspace, tmp_path):
    plan = demo_workspace.plan
    shallower = replace(plan, filters=plan.filters[:2], strides=plan.strides[:2], kernels=plan.kernels[:2])
    _save_source(shallower, tmp_path / "source.keras")
    with pytest.raises(ValueError, match=r"enc2a_conv \[.*\] is not in the source model"):
        load_initial_weights(Objective(plan, TrainSettings()).build_model(), tmp_path / "source.keras")


# -- training from it ------------------------------------------------------------------------------

def test_the_training_loop_starts_from_the_source(demo_workspace, tmp_path):
    """One step of a fold trained with init_weights: the layers are the source's, moved by one Adam
    step (at most about the learning rate), where a fresh network differs by far more."""
    ws, plan = demo_workspace, demo_workspace.plan
    source = _weights(_save_source(replace(plan, labels=TUMOUR), tmp_path / "source.keras"))
    settings = TrainSettings(epochs=1, steps_per_epoch=1, validation_patches=2, learning_rate=1e-3,
                             init_weights=str(tmp_path / "source.keras"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        train_fold(plan, settings, ws.shard_dir, ws.train_ids, ws.val_ids, tmp_path / "fold",
                   tmp_path / "fold" / "model.keras")
    assert "layers copied; new: head (" in stdout.getvalue()
    tuned = _weights(keras.saving.load_model(str(tmp_path / "fold" / "model.keras"), compile=False))
    kernels = [name for name in tuned if name.endswith("_conv") or name.startswith("up")]
    assert max(np.abs(tuned[n][0] - source[n][0]).max() for n in kernels) < 3e-3
    assert np.abs(tuned["enc1a_conv"][0]).mean() > 0.05  # the kernels are far larger than the step


def test_a_fine_tuned_model_learns_the_new_labels(demo_workspace, tmp_path):
    """Pretrained on one label (a sphere), fine-tuned on three nested ones: the new heads learn.
    Measured: Dice 0.05 at the start, 0.60 after 200 steps (from scratch 0.76: one sphere is a
    poor teacher for three; the test shows that the copied network trains, not that it helps)."""
    plan = demo_workspace.plan
    _save_source(replace(plan, labels=TUMOUR), tmp_path / "source.keras", steps=100)
    keras.utils.set_random_seed(0)
    settings = TrainSettings(deep_supervision=True)
    objective = Objective(plan, settings)
    model = objective.build_model()
    load_initial_weights(model, tmp_path / "source.keras")
    step = make_train_step(model, make_optimizer(settings), objective.loss, Distribution())
    rng = np.random.default_rng(3)
    held_out = LEARNING.nested_spheres(plan, 4, rng)
    before = LEARNING._foreground_dice(objective, model, *held_out)
    for _ in range(200):
        step(LEARNING.nested_spheres(plan, plan.batch_size, rng))
    after = LEARNING._foreground_dice(objective, model, *held_out)
    print(f"fine-tuned: Dice {before:.3f} -> {after:.3f}")
    assert after > 0.5 and after > before + 0.4
