"""The training objective: deep-supervision heads and weights, the saved inference model,
region-based training, in 3D and 2D."""

import ast
import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

import unet
from unet.model.losses import dice_ce_loss, region_dice_bce_loss
from unet.preprocessing.plan import Plan
from unet.training.objective import Objective
from unet.training.settings import TrainSettings

# Keras' own saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

BRATS_LABELS = {0: "background", 1: "necrosis", 2: "edema", 4: "enhancing"}  # class indices 0..3
BRATS_REGIONS = {"whole tumour": [1, 2, 4], "tumour core": [1, 4], "enhancing tumour": [4]}


def _plan(dim=3):
    strides = ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)) if dim == 3 else ((1, 1), (2, 2), (2, 2), (2, 2))
    patch = (16, 16, 8) if dim == 3 else (16, 24)
    return Plan(dataset="t", modalities=("a", "b"), labels=BRATS_LABELS, spacing=(1.0,) * dim,
                patch_size=patch, batch_size=2, filters=(4, 8, 8, 8), strides=strides,
                kernels=((3,) * dim,) * 4, normalization=())


def _batch(plan, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, *plan.patch_size, plan.num_channels)).astype(np.float32)
    segs = rng.integers(0, plan.num_classes, size=(2, *plan.patch_size)).astype(np.uint8)
    return images, segs


@pytest.mark.parametrize("dim", [3, 2])
def test_deep_supervision_heads_targets_and_weights(dim):
    plan = _plan(dim)
    objective = Objective(plan, TrainSettings(deep_supervision=True))
    model = objective.build_model()
    images, segs = _batch(plan)
    outputs = model(images, training=True)
    expected_strides = [(1, 1, 1), (2, 2, 1), (4, 4, 2)] if dim == 3 else [(1, 1), (2, 2), (4, 4)]
    assert objective.output_strides == expected_strides
    assert [tuple(o.shape) for o in outputs] == [
        (2, *(p // s for p, s in zip(plan.patch_size, stride)), plan.num_classes) for stride in expected_strides]
    np.testing.assert_allclose(objective.output_weights, [1 / 1.5, 0.5 / 1.5, 0.0])
    # The loss is the weighted sum of each head's loss against the target at its resolution.
    # Level l's voxel i is centred on input voxel offset + i * stride ("same" padding pads at the end).
    expected_offsets = [(0, 0, 0), (1, 1, 0), (3, 3, 1)] if dim == 3 else [(0, 0), (1, 1), (3, 3)]
    assert objective.output_offsets == expected_offsets
    parts = []
    for output, stride, offset in zip(outputs, expected_strides, expected_offsets):
        target = segs[(slice(None),) + tuple(slice(o, None, s) for s, o in zip(stride, offset))]
        assert target.shape == tuple(output.shape[:-1])
        parts.append(float(dice_ce_loss(target, output)))
    expected = sum(w * p for w, p in zip(objective.output_weights, parts))
    assert float(objective.loss(segs, outputs)) == pytest.approx(expected, rel=1e-5)
    # Not just level 0: a perfect second head lowers the loss by its weighted share.
    target = segs[(slice(None),) + tuple(slice(o, None, s) for s, o in zip(expected_strides[1], expected_offsets[1]))]
    perfect = np.log(np.where(np.eye(plan.num_classes, dtype=bool)[target], 0.999, 0.001 / 3)).astype(np.float32)
    better = float(objective.loss(segs, [outputs[0], perfect, outputs[2]]))
    perfect_part = float(dice_ce_loss(target, perfect))
    assert better == pytest.approx(expected - objective.output_weights[1] * (parts[1] - perfect_part), rel=1e-5)
    assert better < expected - 0.1 * objective.output_weights[1]


def test_without_deep_supervision_one_output_and_the_plain_loss():
    plan = _plan()
    objective = Objective(plan, TrainSettings(deep_supervision=False, batch_dice=True))
    model = objective.build_model()
    assert len(model.outputs) == 1 and len(objective.inference_model(model).outputs) == 1
    images, segs = _batch(plan, 1)
    logits = model(images)
    assert float(objective.loss(segs, logits)) == pytest.approx(float(dice_ce_loss(segs, logits, batch_dice=True)),
                                                                rel=1e-6)


@pytest.mark.parametrize("dim", [3, 2])
def test_inference_model_single_output_shares_weights_and_round_trips(dim, tmp_path):
    plan = _plan(dim)
    objective = Objective(plan, TrainSettings(deep_supervision=True))
    model = objective.build_model()
    inference = objective.inference_model(model)
    images, _ = _batch(plan, 2)
    assert len(inference.outputs) == 1
    # The training model outputs logits; the inference model their softmax.
    softmax = lambda logits: keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))  # noqa: E731
    np.testing.assert_allclose(inference.predict_on_batch(images), softmax(model(images)[0]), atol=1e-6)
    assert {layer.name for layer in inference.layers} & {"head_ds1", "logits_ds2"} == set()
    assert inference.get_layer("probabilities").get_config()["activation"] == "softmax"
    # Shared layers: a change of the training model's weights shows in the inference model.
    head = model.get_layer("head")
    head.kernel.assign(head.kernel.numpy() + 1.0)
    np.testing.assert_allclose(inference.predict_on_batch(images), softmax(model(images)[0]), atol=1e-6)

    path = tmp_path / "model.keras"
    inference.save(path)
    loaded = keras.saving.load_model(str(path), compile=False)
    probs = loaded.predict_on_batch(images)
    assert probs.shape == (2, *plan.patch_size, plan.num_classes)
    np.testing.assert_allclose(probs, inference.predict_on_batch(images), atol=1e-6)


@pytest.mark.parametrize("dim", [3, 2])
def test_region_training_outputs_targets_loss_and_confusion(dim):
    plan = _plan(dim)
    objective = Objective(plan, TrainSettings(deep_supervision=True), regions=BRATS_REGIONS)
    assert objective.structure_names == list(BRATS_REGIONS)
    model = objective.build_model()
    images, segs = _batch(plan, 3)
    outputs = model(images, training=True)
    assert all(o.shape[-1] == 3 for o in outputs)
    assert objective.inference_model(model).get_layer("probabilities").get_config()["activation"] == "sigmoid"
    # Region masks of the class-index maps: class 1 (value 1) in WT and TC, class 2 (value 2)
    # in WT only, class 3 (value 4) in all three.
    targets = np.stack([np.isin(segs, [1, 2, 3]), np.isin(segs, [1, 3]), segs == 3], -1).astype(np.float32)
    weights = objective.output_weights
    expected = 0.0
    for weight, output, stride, offset in zip(weights, outputs, objective.output_strides, objective.output_offsets):
        down = targets[(slice(None),) + tuple(slice(o, None, s) for s, o in zip(stride, offset))]
        expected += weight * float(region_dice_bce_loss(down, output))
    assert float(objective.loss(segs, outputs)) == pytest.approx(expected, rel=1e-5)

    # A perfect prediction: loss ~0 and Dice 1 per region.
    perfect = np.where(targets > 0, 9.0, -9.0).astype(np.float32)  # logits: sigmoid 0.9999 and 0.0001
    assert float(Objective(plan, TrainSettings(deep_supervision=False), BRATS_REGIONS).loss(segs, perfect)) < 0.01
    tp, fp, fn = (np.asarray(c) for c in objective.confusion(segs, 1 / (1 + np.exp(-perfect))))
    np.testing.assert_array_equal(tp, targets.reshape(-1, 3).sum(0))
    assert not fp.any() and not fn.any()


def test_regions_from_settings_and_their_errors():
    plan = _plan()
    explicit = {"core": [1, 4]}
    assert Objective(plan, TrainSettings(regions=explicit)).structure_names == ["core"]
    with pytest.raises(ValueError, match="'dataset' must be resolved"):
        Objective(plan, TrainSettings(regions="dataset"))
    assert Objective(plan, TrainSettings(regions="dataset"), regions=explicit).structure_names == ["core"]
    with pytest.raises(ValueError, match=r"train.regions.*'core'.*foreground label values"):
        Objective(plan, TrainSettings(regions={"core": [1, 3]}))  # 3 is no label value of this plan
    with pytest.raises(ValueError, match=r"train.regions.*foreground"):
        Objective(plan, TrainSettings(regions={"all": [0, 1]}))


def test_default_settings_train_with_deep_supervision_on_labels():
    objective = Objective(_plan(), TrainSettings())
    assert objective.settings.deep_supervision and objective.region_sets is None
    assert objective.structure_names == ["necrosis", "edema", "enhancing"]
    assert len(objective.build_model().outputs) == 3


@pytest.mark.parametrize("regions", [None, BRATS_REGIONS])
def test_an_ignore_label_has_no_output_and_counts_nowhere(regions):
    plan = dataclasses.replace(_plan(), labels={**BRATS_LABELS, 5: "ignore"})
    assert plan.num_classes == 4 and plan.ignore_index == 4
    objective = Objective(plan, TrainSettings(deep_supervision=True), regions=regions)
    model = objective.build_model()
    assert all(o.shape[-1] == (4 if regions is None else 3) for o in model.outputs)  # no channel for it
    images, segs = _batch(plan, 4)
    segs[:, :, 8:] = plan.ignore_index  # the second half of every patch unannotated
    outputs = [np.asarray(o) for o in model(images, training=True)]
    loss = float(objective.loss(segs, outputs))
    assert np.isfinite(loss)
    # Whatever the network says at the ignored voxels changes nothing.
    changed = [o.copy() for o in outputs]
    for o, stride, offset in zip(changed, objective.output_strides, objective.output_offsets):
        o[:, :, -(-(8 - offset[1]) // stride[1]):] = 40.0  # voxels centred on y >= 8
    assert float(objective.loss(segs, changed)) == pytest.approx(loss, rel=1e-6)
    # The pseudo Dice counts only annotated voxels.
    probs = np.asarray(objective.inference_model(model)(images))
    counts = [np.asarray(c) for c in objective.confusion(segs, probs)]
    halves = [np.asarray(c) for c in objective.confusion(segs[:, :, :8], probs[:, :, :8])]
    for c, h in zip(counts, halves):
        np.testing.assert_array_equal(c, h)
