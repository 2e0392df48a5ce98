import math

import numpy as np
import pytest

from unet.evaluation.metrics import check_empty, confusion, dice, dice_from_counts, iou, \
    iou_from_counts, volume_ml, voxel_volume_ml


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
    assert iou(pred, ref) == pytest.approx(32 / 96)  # 1/3


def test_unequal_boxes():
    # ref 2x2x2 = 8 voxels inside pred 4x2x2 = 16 voxels: TP 8, FP 8, FN 0.
    ref = box((6, 6, 6), (0, 0, 0), (2, 2, 2))
    pred = box((6, 6, 6), (0, 0, 0), (4, 2, 2))
    tp, fp, fn = confusion(pred, ref)
    assert (tp, fp, fn) == (8, 8, 0)
    assert all(type(v) is int for v in (tp, fp, fn))
    assert dice(pred, ref) == pytest.approx(16 / 24)
    assert iou(pred, ref) == pytest.approx(8 / 16)


def test_iou_and_dice_are_related():
    # IoU = Dice / (2 - Dice) for any non-empty pair.
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.random((2, 6, 7, 8)) > 0.6
        d = dice(a, b)
        assert iou(a, b) == pytest.approx(d / (2 - d))


def test_identical_masks_score_one():
    m = box((5, 5, 5), (1, 1, 1), (3, 4, 5))
    assert dice(m, m) == 1.0 and iou(m, m) == 1.0


def test_disjoint_masks_score_zero():
    a, b = box((6, 6, 6), (0, 0, 0), (2, 2, 2)), box((6, 6, 6), (3, 3, 3), (5, 5, 5))
    assert dice(a, b) == 0.0 and iou(a, b) == 0.0


def test_both_empty_nan_by_default_one_for_brats():
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert math.isnan(dice(empty, empty)) and math.isnan(iou(empty, empty))
    assert math.isnan(dice_from_counts(0, 0, 0, empty="nan"))
    assert dice(empty, empty, empty="one") == 1.0
    assert iou(empty, empty, empty="one") == 1.0


@pytest.mark.parametrize("empty", ["nan", "one"])
def test_empty_reference_nonempty_prediction_is_zero(empty):
    ref = np.zeros((3, 3, 3), dtype=bool)
    pred = ref.copy()
    pred[1, 1, 1] = True
    assert dice(pred, ref, empty=empty) == 0.0
    assert iou(pred, ref, empty=empty) == 0.0


@pytest.mark.parametrize("empty", ["nan", "one"])
def test_empty_prediction_nonempty_reference_is_zero(empty):
    pred = np.zeros((3, 3, 3), dtype=bool)
    ref = pred.copy()
    ref[0, 0, :] = True
    assert confusion(pred, ref) == (0, 0, 3)
    assert dice(pred, ref, empty=empty) == 0.0
    assert iou_from_counts(0, 0, 3, empty=empty) == 0.0


def test_unknown_convention_names_the_key():
    with pytest.raises(ValueError, match="evaluate.empty"):
        check_empty("zero")
    with pytest.raises(ValueError, match="evaluate.empty"):
        dice_from_counts(0, 0, 0, empty="NaN")


def test_volume_in_millilitres():
    assert voxel_volume_ml((1.0, 1.0, 1.0)) == pytest.approx(0.001)
    # 0.5 x 0.5 x 3 mm = 0.75 mm^3 per voxel; 4000 voxels = 3000 mm^3 = 3 ml
    assert volume_ml(4000, (0.5, 0.5, 3.0)) == pytest.approx(3.0)


def test_non_bool_input_is_cast():
    # Integer 0/1 masks behave as booleans.
    assert dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0])) == pytest.approx(0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))
