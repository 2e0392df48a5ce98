import keras
import numpy as np
import pytest

from unet.model.network import build_from_plan, build_unet


def _run(model, shape, channels, seed=0):
    x = np.random.default_rng(seed).normal(size=(2, *shape, channels)).astype(np.float32)
    return np.asarray(model.predict_on_batch(x))


def test_output_shape_and_softmax():
    model = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]])
    probs = _run(model, (16, 16, 16), 2)
    assert probs.shape == (2, 16, 16, 16, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    # Spatial size is open: a whole volume (divisible by the total stride) fits as well.
    assert _run(model, (24, 8, 32), 2).shape == (2, 24, 8, 32, 3)


def test_anisotropic_strides_and_kernels_on_a_non_cubic_input():
    strides = [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    kernels = [[3, 3, 1], [3, 3, 1], [3, 3, 3]]
    model = build_unet(1, 4, [4, 8, 16], strides, kernels)
    probs = _run(model, (16, 24, 6), 1)  # total stride (4, 4, 2)
    assert probs.shape == (2, 16, 24, 6, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert model.get_layer("enc0a_conv").kernel.shape[:3] == (3, 3, 1)
    assert model.get_layer("enc1a_conv").strides == (2, 2, 1)
    assert model.get_layer("enc2a_conv").strides == (2, 2, 2)


def test_two_dimensional_variant():
    model = build_unet(3, 2, [4, 8, 8], [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3)
    probs = _run(model, (16, 12), 3)
    assert probs.shape == (2, 16, 12, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("filters, strides, kernels", [
    ([4, 8, 16], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]]),
    ([4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]]),
])
def test_mismatched_lists(filters, strides, kernels):
    with pytest.raises(ValueError, match="one entry per level"):
        build_unet(1, 2, filters, strides, kernels)


def test_only_backend_neutral_keras_layers():
    """Keras' own layers, and ours written with keras.ops alone (importing nothing but keras;
    tests/model/test_instance_norm.py also runs under KERAS_BACKEND=jax)."""
    import ast
    import inspect

    from unet.model import instance_norm

    model = build_unet(2, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]])
    ours = {instance_norm.__name__}
    for layer in model.layers:
        module = type(layer).__module__
        assert module.startswith(("keras.src.layers.", "keras.src.models.")) or module in ours, module
        assert type(layer).__name__ not in ("Lambda", "TFSMLayer"), layer.name
    tree = ast.parse(inspect.getsource(instance_norm))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "keras"}, imported


def test_probabilities_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_unet(1, 2, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]])
        training = build_unet(1, 2, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [3, 3, 3]], logits=True,
                              deep_supervision=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("enc0a_conv").compute_dtype == "float16"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    probs = _run(model, (8, 8, 8), 1)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert all(o.dtype == "float32" for o in training.outputs)  # the losses' logits


def test_logits_model_and_its_probability_model_share_weights():
    from unet.model.network import probability_model

    for activation, normalize in (("softmax", lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
                                  ("sigmoid", lambda x: 1 / (1 + np.exp(-x)))):
        model = build_unet(1, 3, [4, 8, 8], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], [[3, 3, 3]] * 3, logits=True,
                           deep_supervision=True, activation=activation)
        assert "probabilities" not in {layer.name for layer in model.layers}
        probabilities = probability_model(model, activation)
        x = np.random.default_rng(1).normal(size=(1, 8, 8, 8, 1)).astype(np.float32)
        logits = np.asarray(model.predict_on_batch(x)[0])
        assert logits.min() < 0  # logits, not probabilities
        np.testing.assert_allclose(probabilities.predict_on_batch(x), normalize(logits), atol=1e-5)
        assert probabilities.get_layer("probabilities").get_config()["activation"] == activation


def test_build_from_plan_follows_the_plan():
    from unet.preprocessing.plan import Plan

    plan = Plan(dataset="t", modalities=("a", "b", "c"), labels={0: "bg", 1: "x"}, spacing=(1.0, 1.0, 3.0),
                patch_size=(16, 16, 8), batch_size=2, filters=(4, 8, 16),
                strides=((1, 1, 1), (2, 2, 1), (2, 2, 2)), kernels=((3, 3, 1), (3, 3, 3), (3, 3, 3)),
                normalization=())
    model = build_from_plan(plan)
    assert model.get_layer("enc2a_conv").filters == 16
    assert model.get_layer("enc1a_conv").strides == (2, 2, 1)
    assert _run(model, plan.patch_size, 3).shape == (2, 16, 16, 8, 2)


def test_the_ignore_label_has_no_output_channel_so_prediction_never_paints_it():
    import dataclasses

    from unet.inference.predict import check_model_outputs
    from unet.preprocessing.plan import Plan

    plan = Plan(dataset="t", modalities=("a",), labels={0: "bg", 1: "x", 2: "y", 3: "ignore"}, spacing=(1.0,) * 3,
                patch_size=(8, 8, 8), batch_size=2, filters=(4, 8), strides=((1, 1, 1), (2, 2, 2)),
                kernels=((3, 3, 3),) * 2, normalization=())
    model = build_from_plan(plan)
    probs = _run(model, plan.patch_size, 1)
    assert probs.shape[-1] == plan.num_classes == 3 and plan.label_values == (0, 1, 2)
    check_model_outputs(model, "model.keras", len(plan.label_values), None)  # what predict checks
    assert 3 not in np.asarray(plan.label_values)[probs.argmax(-1)]
    unsparse = dataclasses.replace(plan, labels={0: "bg", 1: "x", 2: "y", 3: "z"})
    assert build_from_plan(unsparse).outputs[0].shape[-1] == 4


def test_deep_supervision_outputs_one_head_per_decoder_level():
    from unet.model.network import output_strides

    strides = [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]
    model = build_unet(1, 3, [4, 8, 8, 8], strides, [[3, 3, 3]] * 4, deep_supervision=True)
    x = np.zeros((2, 16, 16, 8, 1), np.float32)
    outputs = [np.asarray(o) for o in model.predict_on_batch(x)]
    # Every decoder resolution (levels 0..2), none at the bottleneck, full resolution first.
    assert output_strides(strides) == [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    assert [o.shape for o in outputs] == [(2, 16, 16, 8, 3), (2, 8, 8, 8, 3), (2, 4, 4, 4, 3)]
    for o in outputs:
        np.testing.assert_allclose(o.sum(-1), 1.0, atol=1e-5)
    assert model.get_layer("probabilities").output is model.outputs[0]
    assert model.get_layer("probabilities_ds2").compute_dtype == "float32"


def test_deep_supervision_in_two_dimensions():
    model = build_unet(2, 2, [4, 8, 8], [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3, deep_supervision=True)
    outputs = model.predict_on_batch(np.zeros((1, 16, 12, 2), np.float32))
    assert [np.asarray(o).shape for o in outputs] == [(1, 16, 12, 2), (1, 8, 6, 2)]


def test_sigmoid_outputs_are_independent_per_channel():
    model = build_unet(1, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2, activation="sigmoid")
    probs = _run(model, (8, 8, 8), 1)
    assert probs.shape == (2, 8, 8, 8, 3) and ((probs > 0) & (probs < 1)).all()
    assert np.abs(probs.sum(-1) - 1.0).max() > 0.1  # not a softmax
    with pytest.raises(ValueError, match="activation"):
        build_unet(1, 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2, activation="relu")


def _centre_picking_convs(strides, kernels, dim):
    """The plan's strided convolutions (each level's first), each kernel a one-hot at its centre:
    the output is the input voxel the network's grid centres each output voxel on."""
    conv = keras.layers.Conv3D if dim == 3 else keras.layers.Conv2D
    layers_ = []
    for stride, kernel in zip(strides[1:], kernels[1:]):
        layer = conv(1, kernel, strides=stride, padding="same", use_bias=False)
        layer.build((None,) * (dim + 1) + (1,))
        weights = np.zeros(tuple(kernel) + (1, 1), np.float32)
        weights[tuple(k // 2 for k in kernel)] = 1.0
        layer.set_weights([weights])
        layers_.append(layer)
    return layers_


@pytest.mark.parametrize("strides, kernels, patch", [
    ([[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]], [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3]], (16, 24, 8)),
    ([[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]], (8, 16, 16)),
    ([[1, 1], [2, 2], [2, 2]], [[3, 3], [3, 3], [3, 3]], (16, 12)),
])
def test_deep_supervision_targets_sit_where_the_convolutions_centre(strides, kernels, patch):
    """Keras' "same" padding pads more at the end: a stride-2 kernel-3 convolution centres output
    voxel i on input voxel 2i + 1. Each deep-supervision target takes the label of exactly the
    voxel its output voxel is centred on, through every level."""
    from unet.model.losses import downsample_labels
    from unet.model.network import output_offsets, output_strides

    dim = len(patch)
    index = np.arange(int(np.prod(patch)), dtype=np.float32).reshape((1,) + patch)
    x = index[..., None]
    seen = [index]
    for layer in _centre_picking_convs(strides, kernels, dim)[:-1]:  # the bottleneck has no head
        x = np.asarray(layer(x))
        seen.append(x[..., 0])
    offsets = output_offsets(strides, kernels)
    assert len(offsets) == len(output_strides(strides)) == len(seen)
    for level, (stride, offset) in enumerate(zip(output_strides(strides), offsets)):
        np.testing.assert_array_equal(np.asarray(downsample_labels(index, stride, offset)), seen[level])
    # The plain first-voxel grid (voxel 2i) is not the one the network has.
    assert not np.array_equal(np.asarray(downsample_labels(index, output_strides(strides)[1])), seen[1])


def test_same_padding_centres_a_stride_two_output_on_the_odd_voxel():
    conv = keras.layers.Conv3D(1, 3, strides=2, padding="same", use_bias=False)
    conv.build((None, None, None, None, 1))
    weights = np.zeros((3, 3, 3, 1, 1), np.float32)
    weights[1, 1, 1] = 1.0
    conv.set_weights([weights])
    x = np.arange(8, dtype=np.float32)[None, :, None, None, None] * np.ones((1, 8, 2, 2, 1), np.float32)
    np.testing.assert_array_equal(np.asarray(conv(x))[0, :, 0, 0, 0], [1, 3, 5, 7])


def test_convolutions_start_he_normal_for_the_leaky_relu():
    """nnU-Net's InitWeights_He(1e-2): std sqrt(2 / (1 + 0.01^2) / fan_in), fan_in = kernel
    volume x input channels (x output channels for a transposed convolution's kernel)."""
    model = build_unet(1, 2, [32, 64], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2)
    gain2 = 2 / (1 + 0.01 ** 2)
    for name, fan_in in (("enc1a_conv", 27 * 32), ("enc1b_conv", 27 * 64), ("dec0a_conv", 27 * 64),
                         ("up0", 8 * 32)):
        kernel = np.asarray(model.get_layer(name).kernel)
        assert kernel.std() == pytest.approx(np.sqrt(gain2 / fan_in), rel=0.05), name
        assert abs(kernel.mean()) < 0.05 * kernel.std()
    # Untruncated like torch's kaiming_normal_: some weights lie beyond two standard deviations.
    kernel = np.asarray(model.get_layer("enc1b_conv").kernel)
    assert 0.03 < np.mean(np.abs(kernel) > 2 * np.sqrt(gain2 / (27 * 64))) < 0.07
    assert not np.asarray(model.get_layer("head").bias).any()
