import numpy as np
import pytest

from unet.model.losses import confusion_counts, dice_ce_loss, soft_dice

K = 3


def _labels(seed=0, shape=(2, 6, 6, 6)):
    labels = np.random.default_rng(seed).integers(0, K, size=shape)
    labels[:, 0, 0, :K] = np.arange(K)  # every class present in every sample
    return labels.astype(np.uint8)


def _onehot(labels, on=1.0):
    off = (1.0 - on) / (K - 1)
    return np.where(np.eye(K, dtype=bool)[labels], on, off).astype(np.float32)


def _logits(labels, on):
    """Logits whose softmax is `_onehot(labels, on)`."""
    return np.log(_onehot(labels, on))


def test_dice_ce_is_near_zero_for_a_perfect_prediction_and_larger_for_a_wrong_one():
    labels = _labels()
    perfect = float(dice_ce_loss(labels, _logits(labels, 0.999)))
    assert 0.0 <= perfect < 0.01
    wrong = float(dice_ce_loss(labels, _logits((labels + 1) % K, 0.999)))
    uniform = float(dice_ce_loss(labels, np.zeros(labels.shape + (K,), np.float32)))
    assert wrong > uniform > perfect
    assert wrong > 5.0  # CE of a confident wrong answer, plus a Dice term near 1


def test_dice_ce_batch_dice():
    labels = _labels(1)
    assert float(dice_ce_loss(labels, _logits(labels, 0.999), batch_dice=True)) < 0.01


def _gradient(loss, *args):
    import tensorflow as tf

    logits = tf.Variable(args[-1])
    with tf.GradientTape() as tape:
        value = loss(*args[:-1], logits)
    return float(value), tape.gradient(value, logits).numpy()


def test_a_confident_mistake_keeps_its_cross_entropy_gradient():
    """Logit +30 on the wrong class: softmax gives the right class e^-30, below any clip of the
    probability; from the logits the loss is ~30 and pulls the right class up."""
    labels = np.zeros((1, 4, 4, 4), np.uint8)
    labels[0, :2] = 1
    logits = np.zeros((1, 4, 4, 4, K), np.float32)
    logits[..., 1] = 30.0
    logits[0, :2, ..., 1] = 0.0
    logits[0, :2, ..., 2] = 30.0  # class-1 voxels called class 2, confidently
    value, grad = _gradient(dice_ce_loss, labels, logits)
    assert np.isfinite(value) and value > 10.0
    assert np.all(np.isfinite(grad))
    mistaken = grad[0, :2]
    # d CE / d logit = (softmax - onehot) / voxels: about -1/64 for the right class.
    np.testing.assert_allclose(mistaken[..., 1], -1 / labels.size, rtol=0.05)
    assert np.all(mistaken[..., 2] > 0)


def test_a_confident_region_mistake_keeps_its_binary_cross_entropy_gradient():
    from unet.model.losses import region_dice_bce_loss

    targets = np.zeros((1, 4, 4, 4, 2), np.float32)
    targets[..., 0] = 1.0
    logits = np.where(targets > 0, -30.0, 30.0).astype(np.float32)  # every voxel confidently wrong
    value, grad = _gradient(region_dice_bce_loss, targets, logits)
    assert np.isfinite(value) and value > 25.0
    assert np.all(np.isfinite(grad))
    # d BCE / d logit = (sigmoid - target) / elements: -1/128 where the target is 1, +1/128 where 0.
    np.testing.assert_allclose(grad[..., 0], -1 / targets.size, rtol=0.05)
    np.testing.assert_allclose(grad[..., 1], 1 / targets.size, rtol=0.05)
    # And nothing overflows at the other extreme: a perfect, confident prediction costs ~0.
    assert float(region_dice_bce_loss(targets, -logits)) < 1e-3


def test_losses_are_float32_from_float16_logits():
    from unet.model.losses import region_dice_bce_loss

    labels = _labels(4)
    assert np.asarray(dice_ce_loss(labels, _logits(labels, 0.9).astype(np.float16))).dtype == np.float32
    targets = np.eye(K, dtype=np.float32)[labels]
    assert np.asarray(region_dice_bce_loss(targets, np.zeros_like(targets, np.float16))).dtype == np.float32


def test_soft_dice_perfect_and_disjoint():
    labels = _labels(2)
    onehot = np.eye(K, dtype=np.float32)[labels]
    assert float(soft_dice(onehot, onehot)) == pytest.approx(1.0)
    assert float(soft_dice(onehot, onehot, include_background=True, batch_dice=True)) == pytest.approx(1.0)
    shifted = np.eye(K, dtype=np.float32)[(labels + 1) % K]
    assert float(soft_dice(onehot, shifted)) == pytest.approx(0.0, abs=1e-4)


def test_soft_dice_hand_computed():
    # One sample, 4 voxels, classes 0..1. Class 1: reference voxels {0, 1}, prediction {0, 2, 3}
    # -> Dice 2 * 1 / (2 + 3); class 0 (background): reference {2, 3}, prediction {1} -> 0.
    onehot = np.array([[[0, 1], [0, 1], [1, 0], [1, 0]]], np.float32)
    probs = np.array([[[0, 1], [1, 0], [0, 1], [0, 1]]], np.float32)
    assert float(soft_dice(onehot, probs)) == pytest.approx(0.4, abs=1e-4)
    assert float(soft_dice(onehot, probs, include_background=True)) == pytest.approx(0.2, abs=1e-4)


def test_confusion_counts_hand_made():
    labels = np.array([[0, 1, 1, 2, 2, 2]])
    pred = np.array([[0, 1, 2, 2, 0, 1]])
    probs = np.eye(3, dtype=np.float32)[pred] * 0.8 + 0.1  # argmax is `pred`
    tp, fp, fn = (np.asarray(c) for c in confusion_counts(labels, probs, 3))
    # class 0: tp 1 (voxel 0), fp 1 (voxel 4), fn 0
    # class 1: tp 1 (voxel 1), fp 1 (voxel 5), fn 1 (voxel 2)
    # class 2: tp 1 (voxel 3), fp 1 (voxel 2), fn 2 (voxels 4, 5)
    np.testing.assert_array_equal(tp, [1, 1, 1])
    np.testing.assert_array_equal(fp, [1, 1, 1])
    np.testing.assert_array_equal(fn, [0, 1, 2])


def test_region_targets_from_class_indices():
    from unet.inference.regions import region_membership
    from unet.model.losses import region_targets

    # Class indices 0..3 hold label values 0, 1, 2, 4 (BraTS); regions WT, TC, ET.
    membership = region_membership({"wt": [1, 2, 4], "tc": [1, 4], "et": [4]}, (0, 1, 2, 4)).T
    np.testing.assert_array_equal(membership, [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    targets = np.asarray(region_targets(np.array([[0, 1, 2, 3]], np.uint8), membership))
    np.testing.assert_array_equal(targets, [[[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]])


def test_region_loss_near_zero_when_perfect_and_large_when_inverted():
    from unet.model.losses import region_dice_bce_loss

    targets = (np.random.default_rng(3).random((2, 6, 6, 6, 3)) > 0.5).astype(np.float32)
    perfect = np.where(targets > 0, 7.0, -7.0).astype(np.float32)  # sigmoid 0.999 and 0.001
    assert 0.0 <= float(region_dice_bce_loss(targets, perfect)) < 0.01
    assert float(region_dice_bce_loss(targets, perfect, batch_dice=True)) < 0.01
    inverted = float(region_dice_bce_loss(targets, -perfect))
    half = float(region_dice_bce_loss(targets, np.zeros_like(perfect)))
    assert inverted > half > 0.5 and inverted > 5.0


def test_region_confusion_counts_threshold_at_one_half():
    from unet.model.losses import region_confusion_counts

    targets = np.array([[[1, 0], [1, 1], [0, 0]]], np.float32)
    probs = np.array([[[0.9, 0.6], [0.4, 0.51], [0.2, 0.5]]], np.float32)
    tp, fp, fn = (np.asarray(c) for c in region_confusion_counts(targets, probs))
    np.testing.assert_array_equal(tp, [1, 1])
    np.testing.assert_array_equal(fp, [0, 1])
    np.testing.assert_array_equal(fn, [1, 0])


@pytest.mark.parametrize("n, expected", [
    (1, [1.0]),
    (2, [1.0, 0.0]),
    (4, [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0]),
])
def test_deep_supervision_weights_halve_drop_the_lowest_and_sum_to_one(n, expected):
    from unet.model.losses import deep_supervision_weights

    weights = deep_supervision_weights(n)
    np.testing.assert_allclose(weights, expected)
    assert weights.sum() == pytest.approx(1.0)


def test_downsample_labels_takes_every_stride_th_voxel():
    from unet.model.losses import downsample_labels

    labels = np.arange(2 * 8 * 6 * 4).reshape(2, 8, 6, 4)
    down = np.asarray(downsample_labels(labels, (2, 3, 1)))
    assert down.shape == (2, 4, 2, 4)
    np.testing.assert_array_equal(down, labels[:, ::2, ::3, :])
    assert down[1, 1, 1, 2] == labels[1, 2, 3, 2]
    shifted = np.asarray(downsample_labels(labels, (2, 3, 1), (1, 2, 0)))
    assert shifted.shape == (2, 4, 2, 4)
    np.testing.assert_array_equal(shifted, labels[:, 1::2, 2::3, :])


def test_deep_supervision_loss_is_the_weighted_sum_of_the_levels():
    from unet.model.losses import deep_supervision_loss

    labels = _labels(4, shape=(2, 8, 8, 8))
    rng = np.random.default_rng(5)
    outputs = [rng.normal(size=(2, 8 // s, 8 // s, 8 // s, K)).astype(np.float32) for s in (1, 2, 4)]
    strides = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    weights = [0.6, 0.3, 0.1]
    total = float(deep_supervision_loss(dice_ce_loss, labels, outputs, strides, weights))
    parts = [float(dice_ce_loss(labels[:, ::s, ::s, ::s], o)) for o, s in zip(outputs, (1, 2, 4))]
    assert total == pytest.approx(sum(w * p for w, p in zip(weights, parts)), rel=1e-5)
    assert len(set(round(p, 4) for p in parts)) == 3  # the levels really differ
    with pytest.raises(ValueError, match="must match"):
        deep_supervision_loss(dice_ce_loss, labels, outputs, strides[:2], weights)


# -- the ignore label --------------------------------------------------------------------------

def _sparse(seed=6):
    """Labels with an ignore label (class index K) on half the voxels, and random logits."""
    rng = np.random.default_rng(seed)
    labels = _labels(seed, shape=(2, 6, 6, 6))
    labels[:, 3:] = K
    return labels, rng.normal(size=labels.shape + (K,)).astype(np.float32)


def test_ignored_voxels_add_nothing_to_the_loss_or_its_gradient():
    labels, logits = _sparse()
    value, grad = _gradient(lambda y, x: dice_ce_loss(y, x, ignore_index=K), labels, logits)
    assert np.all(grad[:, 3:] == 0) and np.abs(grad[:, :3]).max() > 0
    other = logits.copy()
    other[:, 3:] = 50.0 * np.random.default_rng(1).normal(size=other[:, 3:].shape)
    assert float(dice_ce_loss(labels, other, ignore_index=K)) == pytest.approx(value, rel=1e-6)
    # The same as the loss of the annotated half alone: the CE is the mean over annotated voxels.
    assert value == pytest.approx(float(dice_ce_loss(labels[:, :3], logits[:, :3])), rel=1e-5)
    # A patch with no annotated voxel costs nothing, and nothing is NaN.
    assert float(dice_ce_loss(np.full_like(labels, K), logits, ignore_index=K)) == pytest.approx(0.0, abs=1e-6)


def test_ignored_voxels_are_no_false_positives_of_the_pseudo_dice():
    labels, logits = _sparse(7)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    counted = [np.asarray(c) for c in confusion_counts(labels, probs, K, ignore_index=K)]
    annotated = [np.asarray(c) for c in confusion_counts(labels[:, :3], probs[:, :3], K)]
    for c, a in zip(counted, annotated):
        np.testing.assert_array_equal(c, a)


def test_region_loss_and_counts_with_a_mask_of_annotated_voxels():
    from unet.model.losses import region_confusion_counts, region_dice_bce_loss

    rng = np.random.default_rng(8)
    targets = (rng.random((2, 6, 6, 6, 3)) > 0.5).astype(np.float32)
    logits = rng.normal(size=targets.shape).astype(np.float32)
    mask = np.ones((2, 6, 6, 6, 1), np.float32)
    mask[:, 3:] = 0.0
    value, grad = _gradient(lambda t, x: region_dice_bce_loss(t, x, mask=mask), targets, logits)
    assert np.all(grad[:, 3:] == 0)
    assert value == pytest.approx(float(region_dice_bce_loss(targets[:, :3], logits[:, :3])), rel=1e-5)
    probs = 1 / (1 + np.exp(-logits))
    for c, a in zip(region_confusion_counts(targets, probs, mask=mask),
                    region_confusion_counts(targets[:, :3], probs[:, :3])):
        np.testing.assert_array_equal(np.asarray(c), np.asarray(a))
