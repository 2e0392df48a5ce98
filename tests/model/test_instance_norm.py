"""InstanceNormalization computes what GroupNormalization(groups=channels) computed (values and
gradients, float32 and mixed float16), and models saved with the old layer still load and predict
the same. Backend-agnostic: also run with KERAS_BACKEND=jax (in the JAX benchmark virtualenv)."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from unet.model import network
from unet.model.instance_norm import InstanceNormalization
from unet.model.network import build_unet
from unet.model.saved import load_model, load_weights

BACKEND = keras.backend.backend()


def _inputs(shape, seed=0):
    """Random activations with a per-channel offset larger than their spread, as after a
    convolution, so that statistics computed carelessly (E[x^2] - E[x]^2) would show."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * rng.uniform(0.5, 3.0, shape[-1]) + rng.normal(size=shape[-1]) * 5
            ).astype(np.float32)


def _pair(shape, dtype, seed=1):
    """Ours and GroupNormalization(groups=channels), built for `shape` with the same random gamma
    and beta."""
    channels = shape[-1]
    ours = InstanceNormalization(epsilon=1e-5, dtype=dtype)
    theirs = keras.layers.GroupNormalization(groups=channels, epsilon=1e-5, dtype=dtype)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(1.0, 0.5, channels).astype(np.float32), rng.normal(0.0, 0.5, channels).astype(np.float32)]
    for layer in (ours, theirs):
        layer.build((None,) * (len(shape) - 1) + (channels,))
        layer.set_weights(weights)
    return ours, theirs


def _gradients(layer, x, upstream):
    """d sum(layer(x) * upstream) / d(x, gamma, beta), by the backend's automatic differentiation."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) * upstream)
        return [np.asarray(g, np.float32) for g in tape.gradient(loss, [x, *layer.trainable_weights])]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss(x, weights):
            y, _ = layer.stateless_call(weights, [], x)
            return jnp.sum(y.astype(jnp.float32) * upstream)

        dx, dweights = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), [w.value for w in layer.trainable_weights])
        return [np.asarray(g, np.float32) for g in (dx, *dweights)]
    pytest.skip(f"no gradient helper for the {BACKEND} backend")


@pytest.mark.parametrize("shape", [(2, 6, 5, 7, 8), (3, 9, 4, 16), (1, 33, 2)])
def test_same_values_and_gradients_as_group_normalization_float32(shape):
    x = _inputs(shape)
    upstream = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    ours, theirs = _pair(shape, "float32")
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=0, atol=1e-5)
    for mine, reference in zip(_gradients(ours, x, upstream), _gradients(theirs, x, upstream)):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-5 * max(1.0, np.abs(reference).max()))


def test_same_values_and_gradients_under_mixed_float16():
    shape = (2, 6, 5, 7, 8)
    x = _inputs(shape).astype(np.float16)  # a mixed-precision convolution's float16 output
    upstream = np.random.default_rng(2).normal(size=shape).astype(np.float16)
    ours, theirs = _pair(shape, "mixed_float16")
    y_ours, y_theirs = ours(x), theirs(x)
    assert keras.backend.standardize_dtype(y_ours.dtype) == "float16"
    assert ours.gamma.dtype == "float32"  # the weights stay float32, as GroupNormalization's
    # Both compute in float32 and round once to float16: at most one float16 step apart.
    y_ours, y_theirs = np.asarray(y_ours, np.float32), np.asarray(y_theirs, np.float32)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=2 ** -10, atol=1e-5)
    for mine, reference in zip(_gradients(ours, x, upstream), _gradients(theirs, x, upstream)):
        np.testing.assert_allclose(mine, reference, rtol=2 ** -9, atol=1e-4 * max(1.0, np.abs(reference).max()))


def test_a_training_step_moves_the_weights_as_group_normalization_does():
    """A compiled train step (graph/jit, spatial size unknown at build time): conv -> norm ->
    conv, one SGD step from the same weights lands on the same weights."""
    x = _inputs((2, 8, 8, 8, 3))
    y = np.random.default_rng(3).normal(size=(2, 8, 8, 8, 2)).astype(np.float32)

    def model(norm):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, None, None, 3))
        h = keras.layers.Conv3D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
        h = norm(name="norm")(h)
        h = keras.layers.LeakyReLU(0.01)(h)
        m = keras.Model(inputs, keras.layers.Conv3D(2, 1, name="head")(h))
        m.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        return m

    ours = model(lambda name: InstanceNormalization(epsilon=1e-5, name=name))
    theirs = model(lambda name: keras.layers.GroupNormalization(groups=8, epsilon=1e-5, name=name))
    ours.set_weights(theirs.get_weights())
    start = theirs.get_weights()
    for _ in range(3):
        loss_ours, loss_theirs = ours.train_on_batch(x, y), theirs.train_on_batch(x, y)
        assert loss_ours == pytest.approx(loss_theirs, rel=1e-5)
    for w_ours, w_theirs, w_start in zip(ours.get_weights(), theirs.get_weights(), start):
        assert not np.allclose(w_theirs, w_start)  # every weight moved (conv, gamma, beta, head)
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-5)


def _old_network(monkeypatch):
    """The network as the code before InstanceNormalization built it (GroupNormalization, one
    group per channel, under the same layer names)."""
    monkeypatch.setattr(network, "InstanceNormalization", lambda epsilon, name: keras.layers.GroupNormalization(
        groups=-1, epsilon=epsilon, name=name))  # -1: one group per channel
    old = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]], name="unet")
    monkeypatch.undo()
    return old


def test_models_saved_with_group_normalization_still_load_and_predict_the_same(monkeypatch, tmp_path):
    old = _old_network(monkeypatch)
    assert isinstance(old.get_layer("enc0a_norm"), keras.layers.GroupNormalization)
    rng = np.random.default_rng(4)
    old.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32) for w in old.get_weights()])
    old.save(tmp_path / "old.keras")
    old.save_weights(tmp_path / "old.weights.h5")  # as checkpoints/best.weights.h5
    x = _inputs((2, 16, 16, 16, 2))
    expected = np.asarray(old.predict_on_batch(x))

    loaded = load_model(tmp_path / "old.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(x)), expected, atol=1e-6)
    new = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]], name="unet")
    assert isinstance(new.get_layer("enc0a_norm"), InstanceNormalization)
    # The same weights by name and shape (what fine-tuning from a saved model matches on) ...
    old_weights = {w.path: tuple(w.shape) for w in old.weights}
    assert {w.path: tuple(w.shape) for w in new.weights} == old_weights
    # ... and with them the new network predicts what the old one did.
    new.set_weights(loaded.get_weights())
    np.testing.assert_allclose(np.asarray(new.predict_on_batch(x)), expected, atol=1e-5)
    # A bare weights file keys layers by class-derived names: Keras alone cannot match the old ones.
    fresh = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]], name="unet")
    with pytest.raises(ValueError):
        fresh.load_weights(tmp_path / "old.weights.h5")
    load_weights(fresh, tmp_path / "old.weights.h5")
    np.testing.assert_allclose(np.asarray(fresh.predict_on_batch(x)), expected, atol=1e-5)
    # and a file of the new network's loads as it is
    fresh.save_weights(tmp_path / "new.weights.h5")
    load_weights(new, tmp_path / "new.weights.h5")
    np.testing.assert_allclose(np.asarray(new.predict_on_batch(x)), expected, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the training checkpoints are TensorFlow's")
def test_a_training_checkpoint_of_the_old_network_resumes_into_the_new_one(monkeypatch, tmp_path):
    import tensorflow as tf

    old = _old_network(monkeypatch)
    old.set_weights([w + np.float32(0.25) for w in old.get_weights()])
    path = tf.train.Checkpoint(model=old).save(str(tmp_path / "last"))
    new = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]], name="unet")
    tf.train.Checkpoint(model=new).restore(path).assert_existing_objects_matched()
    for restored, saved in zip(new.get_weights(), old.get_weights()):
        np.testing.assert_array_equal(restored, saved)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the prediction code runs on TensorFlow")
def test_saved_model_loads_through_the_prediction_code_alone(tmp_path):
    """A fresh process that imports only `unet.inference.predict` (not the network) loads it."""
    model = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]])
    model.save(tmp_path / "model.keras")
    x = _inputs((1, 8, 8, 8, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model.predict_on_batch(x)))
    code = ("import sys, numpy as np\n"
            "from unet.inference.predict import load_models\n"
            "[m] = load_models([sys.argv[1] + '/model.keras'])\n"
            "assert type(m.get_layer('enc0a_norm')).__name__ == 'InstanceNormalization'\n"
            "y = m.predict_on_batch(np.load(sys.argv[1] + '/x.npy'))\n"
            "np.testing.assert_allclose(np.asarray(y), np.load(sys.argv[1] + '/y.npy'), atol=1e-6)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_config_round_trip():
    layer = InstanceNormalization(epsilon=1e-3, name="n")
    clone = InstanceNormalization.from_config(layer.get_config())
    assert clone.epsilon == 1e-3 and clone.name == "n"
    assert keras.saving.get_registered_name(InstanceNormalization) == "unet>InstanceNormalization"
