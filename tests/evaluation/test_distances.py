"""Surface distances against hand-computed values and against SimpleITK."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from unet.evaluation.distances import average_surface_distance, bounding_box, hausdorff, hd95, \
    surface, surface_distances
from unet.evaluation.metrics import dice, iou


def planes(shape, axis, first, second):
    """Two one-voxel-thick planes perpendicular to `axis`, at indices `first` and `second`."""
    a = np.zeros(shape, dtype=bool)
    b = np.zeros(shape, dtype=bool)
    index = [slice(None)] * 3
    index[axis] = first
    a[tuple(index)] = True
    index[axis] = second
    b[tuple(index)] = True
    return a, b


@pytest.mark.parametrize("axis, spacing, expected", [
    (0, (3.0, 1.0, 1.0), 6.0),      # 2 voxels apart along a 3 mm axis
    (2, (0.5, 0.7, 3.0), 6.0),
    (1, (3.0, 1.5, 2.0), 3.0),      # the 3 mm axis is not the one that separates them
    (2, (1.0, 1.0, 1.0), 2.0),
])
def test_parallel_planes_anisotropic(axis, spacing, expected):
    pred, ref = planes((6, 5, 7), axis, 1, 3)
    assert hausdorff(pred, ref, spacing) == pytest.approx(expected)
    assert hd95(pred, ref, spacing) == pytest.approx(expected)
    assert average_surface_distance(pred, ref, spacing) == pytest.approx(expected)


def test_line_with_one_outlier_hand_computed():
    # ref: a line of 20 voxels along x; pred: the first 19 of them plus one voxel 5 voxels
    # away along z from the line's start. Spacing (1, 1, 2): the outlier is 10 mm away.
    ref = np.zeros((24, 3, 8), dtype=bool)
    ref[0:20, 0, 0] = True
    pred = np.zeros_like(ref)
    pred[0:19, 0, 0] = True
    pred[0, 0, 5] = True
    d = surface_distances(pred, ref, (1.0, 1.0, 2.0))
    assert sorted(d.pred_to_ref.tolist()) == [0.0] * 19 + [10.0]
    assert sorted(d.ref_to_pred.tolist()) == [0.0] * 19 + [1.0]
    assert hausdorff(pred, ref, (1.0, 1.0, 2.0)) == pytest.approx(10.0)
    # directed 95th percentiles (linear, position 0.95 * 19 = 18.05): 0.05 * 10 and 0.05 * 1
    assert hd95(pred, ref, (1.0, 1.0, 2.0)) == pytest.approx(0.5)
    # ASD: (10 + 1) / (20 + 20) surface voxels
    assert average_surface_distance(pred, ref, (1.0, 1.0, 2.0)) == pytest.approx(11 / 40)


def test_concentric_cubes_hand_computed():
    # ref: 5x5x5 cube (98 surface voxels); pred: the 3x3x3 cube at its centre (26 surface voxels).
    # Each pred surface voxel is 1 from ref's surface. A ref surface voxel with k coordinates on
    # the cube's faces is sqrt(k) from pred: 54 face, 36 edge (sqrt 2), 8 corner (sqrt 3) voxels.
    ref = np.zeros((9, 9, 9), dtype=bool)
    ref[2:7, 2:7, 2:7] = True
    pred = np.zeros_like(ref)
    pred[3:6, 3:6, 3:6] = True
    assert surface(ref).sum() == 98 and surface(pred).sum() == 26
    d = surface_distances(pred, ref)
    np.testing.assert_allclose(d.pred_to_ref, 1.0)
    assert np.bincount(np.rint(d.ref_to_pred ** 2).astype(int)).tolist() == [0, 54, 36, 8]
    assert hausdorff(pred, ref) == pytest.approx(math.sqrt(3))
    assert hd95(pred, ref) == pytest.approx(math.sqrt(3))  # positions 92, 93 of 98 are corners
    expected_asd = (26 + 54 + 36 * math.sqrt(2) + 8 * math.sqrt(3)) / (26 + 98)
    assert average_surface_distance(pred, ref) == pytest.approx(expected_asd)


def test_identical_masks_have_zero_distance():
    m = np.zeros((7, 7, 7), dtype=bool)
    m[1:5, 2:6, 3:4] = True
    assert hausdorff(m, m, (0.5, 2.0, 3.0)) == 0.0
    assert average_surface_distance(m, m) == 0.0


def test_surface_counts_the_image_edge_as_outside():
    full = np.ones((4, 4, 4), dtype=bool)
    assert surface(full).sum() == 64 - 8  # only the 2x2x2 core is interior


def test_distances_do_not_depend_on_the_surrounding_volume():
    # The bounding-box crop changes nothing: the same masks padded into a larger volume.
    rng = np.random.default_rng(3)
    pred = ndimage.gaussian_filter(rng.normal(size=(12, 10, 8)), 2) > 0.1
    ref = ndimage.gaussian_filter(rng.normal(size=(12, 10, 8)), 2) > 0.1
    spacing = (0.9, 1.3, 2.5)
    small = surface_distances(pred, ref, spacing)
    big_pred = np.pad(pred, ((5, 3), (0, 7), (2, 2)))
    big_ref = np.pad(ref, ((5, 3), (0, 7), (2, 2)))
    big = surface_distances(big_pred, big_ref, spacing)
    # Padding turns image-edge voxels into ordinary ones; the edge already counted as outside.
    np.testing.assert_allclose(np.sort(big.pred_to_ref), np.sort(small.pred_to_ref))
    np.testing.assert_allclose(np.sort(big.ref_to_pred), np.sort(small.ref_to_pred))


def test_bounding_box():
    a = np.zeros((5, 6, 7), dtype=bool)
    b = np.zeros_like(a)
    a[1, 2, 3] = True
    b[3, 4, 0] = True
    assert bounding_box(a, b) == (slice(1, 4), slice(2, 5), slice(0, 4))
    assert bounding_box(np.zeros_like(a)) is None


@pytest.mark.parametrize("which", ["pred", "ref", "both"])
def test_empty_mask_gives_nan(which):
    m = np.zeros((4, 4, 4), dtype=bool)
    m[1:3, 1:3, 1:3] = True
    empty = np.zeros_like(m)
    pred = empty if which in ("pred", "both") else m
    ref = empty if which in ("ref", "both") else m
    assert surface_distances(pred, ref) is None
    assert math.isnan(hd95(pred, ref))
    assert math.isnan(hausdorff(pred, ref))
    assert math.isnan(average_surface_distance(pred, ref))


def test_bad_spacing_is_rejected():
    m = np.ones((2, 2, 2), dtype=bool)
    with pytest.raises(ValueError, match="spacing"):
        hd95(m, m, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(m, m, (1.0, 0.0, 1.0))


# --- cross-check against SimpleITK on random blobs with anisotropic spacing ---

SPACING = (0.8, 1.1, 3.0)


def blob(rng, shape=(30, 25, 20), sigma=3.0, quantile=0.8):
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field > np.quantile(field, quantile)


def to_sitk(mask, spacing=SPACING):
    """(X, Y, Z) numpy -> SimpleITK image (which indexes its arrays (Z, Y, X))."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask.astype(np.uint8).transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def sitk_contour(mask):
    """SimpleITK's face-connected contour of `mask`, with background outside the image."""
    padded = np.pad(mask, 1)
    contour = sitk.BinaryContour(to_sitk(padded), fullyConnected=False)
    return sitk.GetArrayFromImage(contour).transpose(2, 1, 0)[1:-1, 1:-1, 1:-1].astype(bool)


@pytest.fixture(scope="module")
def blob_pairs():
    rng = np.random.default_rng(2024)
    return [(blob(rng), blob(rng)) for _ in range(6)]


def test_dice_and_iou_match_simpleitk(blob_pairs):
    for pred, ref in blob_pairs:
        f = sitk.LabelOverlapMeasuresImageFilter()
        f.Execute(to_sitk(ref), to_sitk(pred))
        assert dice(pred, ref) == pytest.approx(f.GetDiceCoefficient(), abs=1e-12)
        assert iou(pred, ref) == pytest.approx(f.GetJaccardCoefficient(), abs=1e-12)


def test_hausdorff_matches_simpleitk(blob_pairs):
    for pred, ref in blob_pairs:
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(to_sitk(pred), to_sitk(ref))
        hd = hausdorff(pred, ref, SPACING)
        assert hd == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)
        assert 0 < hd95(pred, ref, SPACING) <= hd
        assert 0 < average_surface_distance(pred, ref, SPACING) <= hd


def test_surface_distances_match_simpleitk_on_contours(blob_pairs):
    # On the surfaces themselves SimpleITK's filter measures exactly our surface distances:
    # its Hausdorff distance is our maximum, its average Hausdorff distance the mean of our two
    # directed means.
    for pred, ref in blob_pairs:
        assert np.array_equal(surface(pred), sitk_contour(pred))
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(to_sitk(sitk_contour(pred)), to_sitk(sitk_contour(ref)))
        d = surface_distances(pred, ref, SPACING)
        assert d.hausdorff() == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)
        directed_means = (d.pred_to_ref.mean() + d.ref_to_pred.mean()) / 2
        assert directed_means == pytest.approx(f.GetAverageHausdorffDistance(), abs=1e-6)
