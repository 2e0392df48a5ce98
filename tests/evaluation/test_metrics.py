import math

import numpy as np
import pytest

from unet.evaluation.metrics import confusion, dice


def box(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_overlapping_boxes_hand_computed():
    # ref: 4x4x4 = 64 voxels; pred: shifted by 2 along x -> overlap 2x4x4 = 32 voxels.
    ref = box((10, 10, 10), (0, 0, 0), (4, 4, 4))
    pred = box((10, 10, 10), (2, 0, 0), (6, 4, 4))
    assert confusion(pred, ref) == (32, 32, 32)
    assert dice(pred, ref) == pytest.approx(2 * 32 / (2 * 32 + 32 + 32))  # 0.5


def test_unequal_boxes():
    # ref 2x2x2 = 8 voxels inside pred 4x2x2 = 16 voxels: TP 8, FP 8, FN 0.
    ref = box((6, 6, 6), (0, 0, 0), (2, 2, 2))
    pred = box((6, 6, 6), (0, 0, 0), (4, 2, 2))
    tp, fp, fn = confusion(pred, ref)
    assert (tp, fp, fn) == (8, 8, 0)
    assert all(type(v) is int for v in (tp, fp, fn))
    assert dice(pred, ref) == pytest.approx(16 / 24)


def test_identical_masks_dice_one():
    m = box((5, 5, 5), (1, 1, 1), (3, 4, 5))
    assert dice(m, m) == 1.0


def test_disjoint_masks_dice_zero():
    assert dice(box((6, 6, 6), (0, 0, 0), (2, 2, 2)), box((6, 6, 6), (3, 3, 3), (5, 5, 5))) == 0.0


def test_both_empty_is_nan():
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert math.isnan(dice(empty, empty))


def test_empty_reference_nonempty_prediction_is_zero():
    empty = np.zeros((3, 3, 3), dtype=bool)
    pred = empty.copy()
    pred[1, 1, 1] = True
    d = dice(pred, empty)
    assert not math.isnan(d) and d == 0.0


def test_empty_prediction_nonempty_reference_is_zero():
    empty = np.zeros((3, 3, 3), dtype=bool)
    ref = empty.copy()
    ref[0, 0, :] = True
    assert confusion(empty, ref) == (0, 0, 3)
    assert dice(empty, ref) == 0.0


def test_non_bool_input_is_cast():
    # Integer 0/1 masks behave as booleans.
    assert dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0])) == pytest.approx(0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))
