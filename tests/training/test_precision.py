"""Mixed precision and XLA in the training step (unet/training/steps.py): one step of our network
in float16 (loss scaling) and bfloat16, an XLA-compiled step, and the fallback when XLA fails."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet.model.losses import dice_ce_loss
from unet.model.network import build_from_plan
from unet.training.distribution import Distribution
from unet.training.optimizers import make_optimizer
from unet.training.settings import TrainSettings
from unet.training.steps import make_train_step, precision_policy, set_precision, with_xla_fallback

# Keras' own weight saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def float32_afterwards():
    yield
    set_precision(False)  # the policy is process-wide: leave it as the other tests expect


def _batch(plan, seed=0, n=2):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *plan.patch_size, plan.num_channels)).astype("float32")
    segs = rng.integers(0, plan.num_classes, size=(n, *plan.patch_size)).astype("int32")
    return tf.constant(images), tf.constant(segs)


def test_policies_of_the_amp_setting():
    assert precision_policy(False) == "float32"
    assert precision_policy(True) == precision_policy("float16") == "mixed_float16"
    assert precision_policy("bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="train.amp"):
        precision_policy("float8")


@pytest.mark.parametrize("amp, compute, scaled", [("float16", "float16", True), ("bfloat16", "bfloat16", False)])
def test_one_mixed_precision_step(demo_workspace, float32_afterwards, amp, compute, scaled):
    plan = demo_workspace.plan
    set_precision(amp)
    model = build_from_plan(plan)
    optimizer = make_optimizer(TrainSettings(amp=amp, optimizer="sgd", learning_rate=0.01))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    assert convs and all(layer.compute_dtype == compute for layer in convs)
    assert all(w.dtype == "float32" for w in model.trainable_weights)  # master weights stay float32
    images, segs = _batch(plan)
    outputs = model(images)
    assert outputs.dtype == tf.float32  # the softmax head
    assert dice_ce_loss(segs, outputs).dtype == tf.float32

    before = [w.numpy().copy() for w in model.trainable_weights]
    step = make_train_step(model, optimizer, dice_ce_loss, Distribution())
    losses = [float(step((images, segs))) for _ in range(2)]
    assert np.all(np.isfinite(losses))
    after = [w.numpy() for w in model.trainable_weights]
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # the optimizer did apply


def test_an_xla_compiled_step_matches_the_plain_one(demo_workspace, caplog):
    plan = demo_workspace.plan
    set_precision(False)
    images, segs = _batch(plan)
    results = []
    for xla in (False, True):
        keras.utils.set_random_seed(0)
        model = build_from_plan(plan)
        optimizer = keras.optimizers.SGD(0.1)
        step = with_xla_fallback(lambda jit: make_train_step(model, optimizer, dice_ce_loss, Distribution(),
                                                             jit_compile=jit), xla)
        results.append((float(step((images, segs))), float(step((images, segs)))))
    assert "XLA could not compile" not in caplog.text
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4)


def test_a_step_xla_cannot_compile_falls_back_with_a_warning(caplog):
    """A NumPy callback has no XLA kernel: the compiled step fails, the plain one runs."""
    w = tf.Variable(1.0)
    compiled = []

    def make_step(jit_compile):
        compiled.append(jit_compile)

        @tf.function(jit_compile=jit_compile)
        def forward_backward(x):
            with tf.GradientTape() as tape:
                loss = (w * x - tf.numpy_function(lambda v: v * 2, [x], tf.float32)) ** 2
            return loss, tape.gradient(loss, w)

        @tf.function
        def step(x):
            loss, grad = forward_backward(x)
            w.assign_sub(0.1 * grad)
            return loss

        return step

    step = with_xla_fallback(make_step, xla=True)
    with caplog.at_level(logging.WARNING, logger="unet.training.steps"):
        first = float(step(tf.constant(3.0)))
        second = float(step(tf.constant(3.0)))
    assert compiled == [True, False]
    assert "XLA could not compile the training step" in caplog.text and "train.xla" in caplog.text
    assert step.xla_status() == "fell back"  # what the training log records
    assert first == pytest.approx(9.0)  # (1 * 3 - 6)^2, the failed compiled call left w alone
    # w: 1 -> 1 + 0.1 * 18 = 2.8 (the compiled call changed nothing) -> 2.8 - 0.1 * 14.4 = 1.36
    assert second == pytest.approx((2.8 * 3 - 6) ** 2) and float(w.numpy()) == pytest.approx(1.36)


@pytest.mark.parametrize("amp", ["float16", "bfloat16"])
def test_the_loop_trains_with_amp_and_xla(demo_workspace, tmp_path, float32_afterwards, amp, caplog):
    from unet.training.loop import train_fold

    ws = demo_workspace
    settings = TrainSettings(epochs=1, steps_per_epoch=2, amp=amp, xla=True, validation_patches=2)
    rows = train_fold(ws.plan, settings, ws.shard_dir, ws.train_ids, ws.val_ids, tmp_path, tmp_path / "model.keras")
    assert np.isfinite(rows[0]["loss"]) and 0 <= rows[0]["val_dice_mean"] <= 1
    assert "XLA could not compile" not in caplog.text
    assert rows[0]["runtime"]["xla"] == "on"
    assert "no GPU here" in caplog.text  # XLA on a CPU is warned about
    model = keras.saving.load_model(str(tmp_path / "model.keras"), compile=False)
    x = np.zeros((1, *ws.plan.patch_size, ws.plan.num_channels), np.float32)
    assert model(x).dtype == tf.float32
