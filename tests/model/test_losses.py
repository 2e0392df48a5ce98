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
