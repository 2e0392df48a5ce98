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


def test_dice_ce_is_near_zero_for_a_perfect_prediction_and_larger_for_a_wrong_one():
    labels = _labels()
    perfect = float(dice_ce_loss(labels, _onehot(labels, 0.999)))
    assert 0.0 <= perfect < 0.01
    wrong = float(dice_ce_loss(labels, _onehot((labels + 1) % K, 0.999)))
    uniform = float(dice_ce_loss(labels, np.full(labels.shape + (K,), 1 / K, np.float32)))
    assert wrong > uniform > perfect
    assert wrong > 5.0  # CE of a confident wrong answer, plus a Dice term near 1


def test_dice_ce_batch_dice():
    labels = _labels(1)
    assert float(dice_ce_loss(labels, _onehot(labels, 0.999), batch_dice=True)) < 0.01


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
    perfect = np.where(targets > 0, 0.999, 0.001).astype(np.float32)
    assert 0.0 <= float(region_dice_bce_loss(targets, perfect)) < 0.01
    assert float(region_dice_bce_loss(targets, perfect, batch_dice=True)) < 0.01
    inverted = float(region_dice_bce_loss(targets, 1.0 - perfect))
    half = float(region_dice_bce_loss(targets, np.full_like(perfect, 0.5)))
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
    outputs = [rng.dirichlet(np.ones(K), size=(2, 8 // s, 8 // s, 8 // s)).astype(np.float32) for s in (1, 2, 4)]
    strides = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    weights = [0.6, 0.3, 0.1]
    total = float(deep_supervision_loss(dice_ce_loss, labels, outputs, strides, weights))
    parts = [float(dice_ce_loss(labels[:, ::s, ::s, ::s], o)) for o, s in zip(outputs, (1, 2, 4))]
    assert total == pytest.approx(sum(w * p for w, p in zip(weights, parts)), rel=1e-5)
    assert len(set(round(p, 4) for p in parts)) == 3  # the levels really differ
    with pytest.raises(ValueError, match="must match"):
        deep_supervision_loss(dice_ce_loss, labels, outputs, strides[:2], weights)
