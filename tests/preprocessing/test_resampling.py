import numpy as np
import pytest
from scipy import ndimage

from unet.preprocessing.resampling import (anisotropic_axis, nearest_indices, resample, resample_channels,
                                           resample_labels, separate_axis)
from unet.preprocessing.spacing import shape_at_spacing


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def smooth_image(shape=(20, 22, 18)):
    g = np.indices(shape).astype(np.float32)
    x = np.sin(g[0] / 4.0) * np.cos(g[1] / 5.0) + g[2] / 20.0
    return np.stack([x, 10.0 * x + 3.0], axis=-1).astype(np.float32)


def test_resample_image_finer_and_back_is_close():
    image = smooth_image()
    fine = resample_channels(image, (37, 41, 30), order=3)
    assert fine.shape == (37, 41, 30, 2) and fine.dtype == np.float32
    back = resample_channels(fine, image.shape[:3], order=3)
    assert back.shape == image.shape
    err = np.abs(back - image).max(axis=(0, 1, 2))
    amplitude = np.abs(image).max(axis=(0, 1, 2))
    assert (err / amplitude < 0.01).all(), err
    # The value range is kept (no large spline overshoot on a smooth image).
    assert fine[..., 0].max() <= image[..., 0].max() + 0.05


def test_resample_keeps_field_of_view():
    # A linear ramp along x, in physical units of voxel centres (grid mode: edges aligned).
    n, m = 10, 25
    ramp = ((np.arange(n) + 0.5) / n).astype(np.float32)[:, None, None, None] * np.ones((1, 3, 3, 1))
    out = resample_channels(ramp.astype(np.float32), (m, 3, 3), order=1)
    expected = (np.arange(m) + 0.5) / m
    inner = slice(3, m - 3)  # away from the edge clamp
    np.testing.assert_allclose(out[inner, 1, 1, 0], expected[inner], atol=1e-5)


def test_identical_shape_returns_a_copy():
    image = smooth_image((6, 7, 8))
    out = resample_channels(image, (6, 7, 8))
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)
    labels = np.random.default_rng(0).integers(0, 3, size=(6, 7, 8)).astype(np.uint8)
    out = resample_labels(labels, (6, 7, 8), 3)
    np.testing.assert_array_equal(out, labels)
    assert not np.shares_memory(out, labels)
    out[0, 0, 0] = 9
    assert labels[0, 0, 0] != 9


def label_map():
    shape = (20, 20, 20)
    g = np.indices(shape)
    lab = np.zeros(shape, np.uint8)
    lab[((g - 9.5) ** 2).sum(0) <= 36] = 1          # a ball
    lab[3, 2:18, 2:18] = 2                           # a one-voxel-thin sheet
    lab[15:17, 15:17, 15:17] = 3                     # a 2x2x2 lesion
    lab[17, 3, 17] = 4                               # a single voxel
    return lab


@pytest.mark.parametrize("shape", [(30, 30, 30), (15, 15, 15), (20, 20, 10), (28, 20, 14),
                                   (10, 10, 10), (5, 4, 3)])
def test_resample_labels_keeps_every_label(shape):
    lab = label_map()
    out = resample_labels(lab, shape, 5)
    assert out.shape == shape and out.dtype == lab.dtype
    assert set(np.unique(out).tolist()) == {0, 1, 2, 3, 4}
    back = resample_labels(out, lab.shape, 5)
    assert set(np.unique(back).tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("shape", [(30, 30, 30), (26, 33, 29), (15, 15, 15)])
def test_resample_labels_round_trip_dice(shape):
    lab = label_map()
    back = resample_labels(resample_labels(lab, shape, 5), lab.shape, 5)
    assert dice(back == 0, lab == 0) > 0.99
    assert dice(back == 1, lab == 1) > 0.9
    if min(shape) >= 20:  # upsampling first: even the thin sheet comes back nearly intact
        assert dice(back == 2, lab == 2) > 0.85
        assert dice(back == 3, lab == 3) >= 0.5


def test_resample_labels_upsampling_a_block_is_exact():
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[1:3, 1:3, 1:3] = 1
    lab[0, 0, 0] = 2
    out = resample_labels(lab, (8, 8, 8), 3)
    expected = lab.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    # Block edges fall on voxel edges at factor 2: the upsampled map is the repeated one
    # except where linear interpolation ties exactly (0.5) on the block boundary.
    assert dice(out == 1, expected == 1) > 0.6
    assert (out[2:6, 2:6, 2:6][1:-1, 1:-1, 1:-1] == 1).all()
    assert (out == 2).any()


def test_anisotropic_axis_is_the_coarse_one_beyond_the_ratio():
    assert anisotropic_axis((0.7, 0.7, 5.0)) == 2
    assert anisotropic_axis((3.5, 1.0, 1.0)) == 0
    assert anisotropic_axis((1.0, 1.0, 2.5)) is None
    assert anisotropic_axis((1.0, 1.0, 3.0)) is None      # nnU-Net: the ratio must exceed 3
    assert anisotropic_axis((0.24, 1.25, 1.25)) is None   # two coarse axes: no single one


def test_separate_axis_decision_follows_nnunet():
    # The case's own spacing decides when it is anisotropic ...
    assert separate_axis((0.7, 0.7, 5.0), (1.0, 1.0, 1.0)) == 2
    assert separate_axis((4.0, 1.0, 1.0), (1.0, 1.0, 5.0)) == 0
    # ... even when a tie of coarse axes means no separate axis at all,
    assert separate_axis((0.24, 1.25, 1.25), (1.0, 1.0, 5.0)) is None
    # otherwise the target spacing decides,
    assert separate_axis((1.0, 1.0, 2.0), (1.0, 1.0, 3.5)) == 2
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 4.0, 1.0)) == 1
    assert separate_axis((1.0, 1.0, 1.0), (3.5, 3.5, 1.0)) is None
    # and with neither anisotropic, none.
    assert separate_axis((1.0, 1.0, 3.0), (1.0, 1.0, 1.5)) is None
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is None


def test_unchanged_axis_is_not_interpolated_and_matches_3d_zoom():
    # Slicing along an axis whose size stays is the same spline interpolation as in 3D.
    image = smooth_image()[..., 0]
    fast = resample(image, (30, 22, 12), order=3)
    full = ndimage.zoom(image, (30 / 20, 1.0, 12 / 18), order=3, mode="nearest", grid_mode=True)
    full = np.clip(full, image.min(), image.max())
    np.testing.assert_allclose(fast, full, atol=1e-4)
    assert fast.dtype == np.float32


def test_nearest_indices_are_ndimage_order_0():
    # The same voxels as ndimage's order-0 zoom (grid mode), e.g. 18 -> 7 has a tie (8.5 -> 9).
    for n, m in [(18, 7), (18, 41), (5, 12), (12, 5), (6, 30), (30, 6), (7, 7), (1, 4)]:
        ramp = np.arange(n, dtype=np.float32)
        zoomed = ndimage.zoom(ramp, m / n, order=0, mode="nearest", grid_mode=True)
        np.testing.assert_array_equal(nearest_indices(n, m), zoomed.astype(int))


def test_separate_axis_takes_nearest_input_slices():
    # Each output slice along the separate axis is the in-plane resampling of the input slice
    # nearest to it (nnU-Net's map_coordinates, order 0, centres at (j + 0.5) * n / m - 0.5).
    image = smooth_image()[..., 0]
    for m in (7, 18, 41):
        out = resample(image, (25, 15, m), order=3, separate=2)
        in_plane = resample(image, (25, 15, 18), order=3, separate=2)
        src = nearest_indices(18, m)
        np.testing.assert_array_equal(out, in_plane[:, :, src])
        # In-plane: per slice a 2D spline zoom, clipped to the slice's range (as skimage's resize).
        slice_5 = image[:, :, 5]
        in_2d = ndimage.zoom(slice_5, (25 / 20, 15 / 22), order=3, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(in_plane[:, :, 5], np.clip(in_2d, slice_5.min(), slice_5.max()), atol=1e-6)


def test_anisotropic_round_trip_with_separate_z():
    # A 0.7 x 0.7 x 5 mm case to 1 mm isotropic and back: in-plane splines, z nearest.
    shape, spacing, target = (40, 36, 6), (0.7, 0.7, 5.0), (1.0, 1.0, 1.0)
    g = np.indices(shape).astype(np.float32)
    image = (np.sin(g[0] / 6.0) * np.cos(g[1] / 7.0) + g[2])[..., None].astype(np.float32)
    axis = separate_axis(spacing, target)
    assert axis == 2
    fine_shape = shape_at_spacing(shape, spacing, target)
    assert fine_shape == (28, 25, 30)
    fine = resample_channels(image, fine_shape, order=3, separate_axis=axis)
    # z by nearest: each fine slice holds one input slice's level, never a blend of two.
    levels = fine[..., 0].mean(axis=(0, 1))
    assert np.abs(levels - np.round(levels)).max() < 0.05
    back = resample_channels(fine, shape, order=3, separate_axis=axis)
    np.testing.assert_allclose(back[..., 0].mean(axis=(0, 1)), np.arange(6), atol=0.05)
    assert np.abs(back - image).max() < 0.05  # in-plane interpolation error only


@pytest.mark.parametrize("shape", [(30, 30, 40), (15, 15, 10), (20, 20, 7), (28, 14, 20)])
def test_resample_labels_with_separate_z_keeps_every_label(shape):
    lab = label_map()
    lab[4:8, 4:8, 11] = 5  # a structure in one z slice only, which downsampling z skips
    out = resample_labels(lab, shape, 6, separate_axis=2)
    assert out.shape == shape and out.dtype == lab.dtype
    assert set(np.unique(out).tolist()) == {0, 1, 2, 3, 4, 5}
    back = resample_labels(out, lab.shape, 6, separate_axis=2)
    assert set(np.unique(back).tolist()) == {0, 1, 2, 3, 4, 5}
    if shape[2] >= 20:  # z upsampled (or kept), so nearest along z loses nothing of the ball
        assert dice(back == 1, lab == 1) > 0.9


def test_resample_labels_separate_z_is_nearest_along_z():
    # Labels that differ only along z: per-label linear in-plane, nearest along z, so each output
    # slice is a copy of (the in-plane resampling of) one input slice.
    lab = np.zeros((12, 12, 5), np.uint8)
    for z in range(5):
        lab[3:9, 3:9, z] = z % 3 + 1
    out = resample_labels(lab, (18, 18, 12), 4, separate_axis=2)
    src = nearest_indices(5, 12)
    for j, z in enumerate(src):
        assert set(np.unique(out[..., j]).tolist()) == {0, z % 3 + 1}
        np.testing.assert_array_equal(out[..., j], resample_labels(lab[..., z:z + 1], (18, 18, 1), 4)[..., 0])


def test_separate_axis_is_resampled_by_nearest_neighbour_only():
    # Slice k along z holds the value k; x/y vary smoothly.
    x = np.linspace(0, 1, 8, dtype=np.float32)
    volume = (x[:, None, None] + x[None, :, None] + np.arange(4, dtype=np.float32)[None, None, :] * 10)[..., None]
    separate = resample_channels(volume, (16, 16, 12), order=1, separate_axis=2)[..., 0]
    blended = resample_channels(volume, (16, 16, 12), order=1)[..., 0]
    # Every output slice comes from one input slice: its values stay within that slice's range.
    slice_index = np.floor(separate[0, 0, :] / 10).astype(int)
    for z in range(12):
        lo, hi = slice_index[z] * 10, slice_index[z] * 10 + 2
        assert lo - 1e-5 <= separate[..., z].min() and separate[..., z].max() <= hi + 1e-5
    assert sorted(set(slice_index)) == [0, 1, 2, 3]
    # Linear interpolation across slices would create values between slices.
    between = (blended % 10 > 3) & (blended % 10 < 7)
    assert between.any()
    assert not ((separate % 10 > 3) & (separate % 10 < 7)).any()
