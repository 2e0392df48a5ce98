import numpy as np
import pytest

from unet.preprocessing.spacing import shape_at_spacing, target_spacing


def same_shapes(spacings, shape=(100, 100, 100)):
    return np.array([shape] * len(spacings))


def test_shape_at_spacing_arithmetic():
    assert shape_at_spacing((100, 100, 20), (0.7, 0.7, 5.0), (1.0, 1.0, 1.0)) == (70, 70, 100)
    assert shape_at_spacing((64, 64, 64), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == (64, 64, 64)
    assert shape_at_spacing((10, 11, 12), (1.0, 1.0, 1.0), (0.5, 2.0, 3.0)) == (20, 6, 4)
    # round half to even: 5 * 1 / 2 = 2.5 -> 2; 7 * 1 / 2 = 3.5 -> 4
    assert shape_at_spacing((5, 7, 3), (1, 1, 1), (2, 2, 2)) == (2, 4, 2)
    assert shape_at_spacing((3, 3, 3), (1, 1, 1), (100, 100, 100)) == (1, 1, 1)  # never 0


# --- target spacing ---------------------------------------------------------------------------

def test_target_spacing_is_the_median():
    spacings = np.array([[1.0, 1.0, 1.0], [1.2, 0.8, 1.5], [0.8, 1.1, 2.0], [0.9, 0.9, 1.2]])
    assert target_spacing(spacings, same_shapes(spacings)) == pytest.approx((0.95, 0.95, 1.35))


def test_target_spacing_mildly_anisotropic_keeps_median():
    spacings = np.array([[0.9, 0.9, 1.8], [1.0, 1.0, 2.2], [0.9, 0.9, 2.5]])  # ratio 2.2 < 3
    assert target_spacing(spacings, same_shapes(spacings)) == pytest.approx((0.9, 0.9, 2.2))


def test_target_spacing_anisotropic_coarse_axis_takes_10th_percentile():
    z = [5.0, 2.5, 5.0, 4.0, 6.5, 5.0, 4.5, 5.0, 6.0, 5.0]
    xy = [0.70, 0.68, 0.72, 0.70, 0.75, 0.65, 0.70, 0.71, 0.69, 0.70]
    spacings = np.array([[a, a, c] for a, c in zip(xy, z)])
    # Median z 5.0 > 3 x 0.70 and 20 slices x 3 < 320 voxels in-plane: anisotropic.
    # sorted z: 2.5 4 4.5 5 ...; 10th percentile at rank 0.9: 2.5 + 0.9 * (4 - 2.5) = 3.85
    shapes = same_shapes(spacings, (320, 320, 20))
    assert target_spacing(spacings, shapes) == pytest.approx((0.70, 0.70, 3.85))


def test_target_spacing_coarse_axis_may_be_first():
    spacings = np.array([[4.0, 1.0, 1.0], [5.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    # 10th percentile of (4, 5, 6): 4 + 0.2 * 1 = 4.2
    shapes = same_shapes(spacings, (30, 200, 200))
    assert target_spacing(spacings, shapes) == pytest.approx((4.2, 1.0, 1.0))


def test_target_spacing_thick_slices_but_many_keep_the_median():
    # nnU-Net's second condition: the coarse axis must also have under 1/3 of the voxels of the
    # others. 5 mm slices but 120 of them against 320 in-plane (120 * 3 > 320): median kept.
    spacings = np.array([[0.7, 0.7, z] for z in (3.0, 5.0, 5.0, 5.0, 6.0)])
    assert target_spacing(spacings, same_shapes(spacings, (320, 320, 120))) == pytest.approx((0.7, 0.7, 5.0))
    # The same spacings with 20 slices: z takes its 10th percentile, 3 + 0.4 * 2 = 3.8.
    assert target_spacing(spacings, same_shapes(spacings, (320, 320, 20))) == pytest.approx((0.7, 0.7, 3.8))


def test_target_spacing_ratio_is_against_the_coarsest_other_axis():
    # Median (0.5, 1.0, 2.8): 2.8 / 0.5 = 5.6 but 2.8 < 3 x 1.0, so not anisotropic for nnU-Net.
    spacings = np.array([[0.5, 1.0, 1.0], [0.5, 1.0, 2.8], [0.5, 1.0, 6.0]])
    assert target_spacing(spacings, same_shapes(spacings, (300, 300, 30))) == pytest.approx((0.5, 1.0, 2.8))


def test_target_spacing_never_finer_than_the_other_axes():
    # Median z 4.0 > 3 x 1.0: anisotropic. The 10th percentile of (0.5, 0.5, 4, 4, 4, 4) sits at
    # rank 0.5, between the two 0.5s: 0.5 mm, finer than the in-plane 1.0 mm, so clamped to 1.0.
    spacings = np.array([[1.0, 1.0, z] for z in (0.5, 0.5, 4.0, 4.0, 4.0, 4.0)])
    assert target_spacing(spacings, same_shapes(spacings, (200, 200, 20))) == pytest.approx((1.0, 1.0, 1.0))
