import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from unet.data.augmentation import AugmentSettings, augmented_patch, intensity_augment, mirror, spatial_patch
from unet.data.sampling import crop
from unet.data.spatial import elastic_displacement, rotation_matrix, sample_through_grid

PATCH = (16, 16, 16)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _noise(shape=PATCH + (2,), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _smooth_case(shape=(28, 30, 26)):
    """Channel 0 a smooth blob (so a threshold gives a seg with clean borders), channel 1 noise."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    dist = sum(((g - (n - 1) / 2 - 2) / (n / 3)) ** 2 for g, n in zip(grids, shape))
    blob = np.exp(-dist).astype(np.float32)
    image = np.stack([blob, _noise(shape, 1)], axis=-1)
    return image, (blob > 0.5).astype(np.uint8)


def _only(**probabilities):
    return dataclasses.replace(AugmentSettings.off(), **probabilities)


# -- probabilities 0 and 1 --------------------------------------------------------------------

INTENSITY = ["p_noise", "p_blur", "p_brightness", "p_contrast", "p_low_resolution", "p_gamma_inverted", "p_gamma"]


@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_transform_probability_one_changes_zero_keeps(name):
    image = tf.constant(_noise() + 1.0)
    # Every channel for the transforms that pick channels with a probability of their own.
    always = _only(**{name: 1.0}, blur_per_channel=1.0, low_resolution_per_channel=1.0)
    for i in range(3):
        assert not np.allclose(intensity_augment(image, always, _seed(i)).numpy(), image.numpy())
    kept = intensity_augment(image, _only(**{name: 0.0}), _seed(0)).numpy()
    np.testing.assert_array_equal(kept, image.numpy())


def test_intensity_transform_fires_with_its_probability():
    image = tf.constant(_noise() + 1.0)
    run = tf.function(lambda s: intensity_augment(image, _only(p_brightness=0.3), s))
    fired = sum(not np.array_equal(run(_seed(i, 9)).numpy(), image.numpy()) for i in range(200))
    assert 40 <= fired <= 80


def test_everything_off_is_a_plain_crop():
    image, seg = _smooth_case()
    start = tf.constant([3, 5, 2])
    img_p, seg_p = augmented_patch(image, seg, start, PATCH, AugmentSettings.off(), _seed(1))
    np.testing.assert_array_equal(img_p.numpy(), crop(image, start, PATCH).numpy())
    np.testing.assert_array_equal(seg_p.numpy(), crop(seg, start, PATCH).numpy())


def test_mirror_keeps_image_and_seg_aligned():
    seg = np.random.default_rng(3).integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    image = np.stack([seg.astype(np.float32), _noise((6, 7, 8))], axis=-1)
    outcomes = set()
    for i in range(12):
        img_m, seg_m = (t.numpy() for t in mirror(tf.constant(image), tf.constant(seg), _seed(i, 1)))
        np.testing.assert_array_equal(img_m[..., 0], seg_m)
        flips = [axes for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
                 if np.array_equal(img_m, np.flip(image, axes) if axes else image)]
        assert flips, "image is not a mirroring of the input"
        outcomes.add(flips[0])
    assert len(outcomes) > 2


@pytest.mark.parametrize("probability, axes", [(0.0, ()), (1.0, (0, 1, 2))])
def test_mirror_probability_extremes(probability, axes):
    image = _noise((6, 7, 8, 2))
    seg = (image[..., 0] > 0).astype(np.uint8)
    img_m, seg_m = mirror(tf.constant(image), tf.constant(seg), _seed(5), probability)
    np.testing.assert_array_equal(img_m.numpy(), np.flip(image, axes) if axes else image)
    np.testing.assert_array_equal(seg_m.numpy(), np.flip(seg, axes) if axes else seg)


# -- spatial ----------------------------------------------------------------------------------

def test_identity_grid_equals_the_crop():
    image, seg = _smooth_case()
    for start in ([3, 5, 2], [-4, 20, 15]):
        img_p, seg_p = sample_through_grid(image, seg, tf.constant(start), PATCH, tf.eye(3))
        np.testing.assert_allclose(img_p.numpy(), crop(image, start, PATCH).numpy(), atol=1e-6)
        np.testing.assert_array_equal(seg_p.numpy(), crop(seg, start, PATCH).numpy())


def test_quarter_turn_is_rot90_about_the_patch_centre():
    image, seg = _smooth_case((16, 16, 16))
    matrix = rotation_matrix([0.0, 0.0, math.pi / 2], [1.0, 1.0, 1.0])  # about axis 2: plane (0, 1)
    img_p, seg_p = sample_through_grid(image, seg, tf.constant([0, 0, 0]), PATCH, matrix)
    turned = [np.rot90(image, k, axes=(0, 1)) for k in (1, 3)]
    assert any(np.allclose(img_p.numpy(), t, atol=1e-4) for t in turned)
    assert any(np.array_equal(seg_p.numpy(), np.rot90(seg, k, axes=(0, 1))) for k in (1, 3))


def test_scaling_above_one_shrinks_structures():
    image, seg = _smooth_case((32, 32, 32))
    start = tf.constant([8, 8, 8])
    _, plain = sample_through_grid(image, seg, start, PATCH, tf.eye(3))
    _, zoomed_out = sample_through_grid(image, seg, start, PATCH, rotation_matrix([0.0] * 3, [1.4] * 3))
    assert 0 < zoomed_out.numpy().sum() < 0.6 * plain.numpy().sum()


@pytest.mark.parametrize("elastic", [False, True])
def test_image_and_seg_stay_aligned_under_spatial_transforms(elastic):
    image, seg = _smooth_case()
    settings = _only(p_rotation=1.0, p_scaling=1.0, p_elastic=1.0 if elastic else 0.0)
    for i in range(4):
        img_p, seg_p = spatial_patch(image, seg, tf.constant([6, 7, 5]), PATCH, settings, _seed(i, 2))
        img_p, seg_p = img_p.numpy(), seg_p.numpy()
        assert not np.array_equal(seg_p, crop(seg, [6, 7, 5], PATCH).numpy())
        # The seg is still the thresholded image: exactly, away from the border where nearest
        # neighbour (seg) and trilinear (image) interpolation may differ.
        clear = np.abs(img_p[..., 0] - 0.5) > 0.1
        np.testing.assert_array_equal((img_p[..., 0] > 0.5)[clear], (seg_p == 1)[clear])
        assert clear.mean() > 0.6 and seg_p.sum() > 0


def test_spatial_probability_zero_is_the_fast_crop():
    image, seg = _smooth_case()
    img_p, seg_p = spatial_patch(image, seg, tf.constant([1, 2, 3]), PATCH, _only(), _seed(4))
    np.testing.assert_array_equal(img_p.numpy(), crop(image, [1, 2, 3], PATCH).numpy())
    np.testing.assert_array_equal(seg_p.numpy(), crop(seg, [1, 2, 3], PATCH).numpy())


def test_elastic_displacement_is_smooth_with_the_requested_peak():
    field = elastic_displacement(PATCH, 4.0, 2.5, _seed(6)).numpy()
    assert field.shape == PATCH + (3,)
    np.testing.assert_allclose(np.abs(field).max(axis=(0, 1, 2)), 2.5, rtol=1e-4)
    assert np.abs(np.diff(field, axis=0)).max() < 2.5  # neighbours move together
    assert np.all(elastic_displacement(PATCH, 4.0, 0.0, _seed(6)).numpy() == 0)


def test_nnunet_settings_for_anisotropic_patches_rotate_in_plane():
    assert AugmentSettings.nnunet((128, 128, 128)).rotation_axes == (0, 1, 2)
    flat = AugmentSettings.nnunet((20, 160, 160))
    assert flat.rotation_axes == (0,) and flat.rotation == pytest.approx(math.pi)
    assert AugmentSettings.nnunet((64,) * 3, elastic=True).p_elastic == 0.2
    assert AugmentSettings.nnunet((64,) * 3).p_elastic == 0.0


@pytest.mark.parametrize("patch, coarse", [((64, 64, 16), 2), ((16, 64, 64), 0), ((64, 16, 64), 1)])
def test_anisotropic_settings_follow_the_coarse_axis_wherever_it_is(patch, coarse):
    settings = AugmentSettings.nnunet(patch, elastic=True)
    plane = tuple(a for a in range(3) if a != coarse)
    assert settings.rotation_axes == (coarse,) and settings.rotation == pytest.approx(math.pi)
    assert settings.scaling_axes == settings.low_resolution_axes == settings.elastic_axes == plane
    assert settings.mirror_axes == (0, 1, 2)  # nnU-Net mirrors along every axis in its 2D mode too
    # The spacing, when given, names the coarse axis, as nnU-Net's transpose does.
    spacing = [0.8, 0.8, 0.8]
    spacing[coarse] = 4.0
    assert AugmentSettings.nnunet(patch, spacing=spacing).rotation_axes == (coarse,)
    # Isotropic spacing: nnU-Net's axis 0 counts as the coarse one, whatever the patch's shape.
    isotropic = AugmentSettings.nnunet(patch, spacing=[1.0, 1.0, 1.0])
    assert isotropic.rotation_axes == ((0,) if coarse == 0 else (0, 1, 2))


@pytest.mark.parametrize("patch, coarse", [((64, 64, 16), 2), ((16, 64, 64), 0)])
def test_an_anisotropic_patch_moves_only_within_its_slices(patch, coarse):
    """Rotated, scaled and deformed, every voxel still comes from its own slice along the coarse
    axis: a case whose value is the coarse coordinate reads back exactly that coordinate."""
    shape = [96, 96, 96]
    shape[coarse] = patch[coarse]
    ramp = np.arange(shape[coarse], dtype=np.float32).reshape([-1 if a == coarse else 1 for a in range(3)])
    across = np.arange(shape[(coarse + 1) % 3], dtype=np.float32).reshape(
        [-1 if a == (coarse + 1) % 3 else 1 for a in range(3)])
    image = np.stack([np.broadcast_to(ramp + 1.0, shape), np.broadcast_to(across, shape)], -1).astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    start = tf.constant([(n - p) // 2 for n, p in zip(shape, patch)])
    settings = dataclasses.replace(AugmentSettings.nnunet(patch, elastic=True), p_rotation=1.0, p_scaling=1.0,
                                   p_elastic=1.0)
    expected = np.broadcast_to(np.moveaxis(np.arange(patch[coarse], dtype=np.float32)[:, None, None], 0, coarse)
                               + 1.0, patch)
    for i in range(3):
        both = spatial_patch(image, seg, start, patch, settings, _seed(i, 9))[0].numpy()
        out = both[..., 0]
        inside = out != 0  # points rotated beyond the case read its zero border
        assert inside.mean() > 0.5
        np.testing.assert_allclose(out[inside], expected[inside], atol=1e-4)
        assert not np.allclose(both[..., 1], crop(image, start, patch).numpy()[..., 1])  # the plane did move
    # 3D settings on the same case tilt the slices: values mix across the coarse axis.
    tilted = dataclasses.replace(settings, rotation_axes=(0, 1, 2), rotation=math.radians(30))
    out = spatial_patch(image, seg, start, patch, tilted, _seed(1, 9))[0].numpy()[..., 0]
    assert np.abs(out - expected)[out != 0].max() > 0.5


def test_in_plane_elastic_deformation_is_the_same_in_every_slice():
    field = elastic_displacement((16, 16, 4), 4.0, 2.0, _seed(7), axes=(0, 1)).numpy()
    assert np.all(field[..., 2] == 0)
    np.testing.assert_array_equal(field, np.broadcast_to(field[:, :, :1], field.shape))
    np.testing.assert_allclose(np.abs(field[..., :2]).max(axis=(0, 1, 2)), 2.0, rtol=1e-4)


# -- the non-zero mask after augmentation --------------------------------------------------------

def _masked_case(shape=(28, 30, 26)):
    """Channels 0 and 1 z-scored inside an ellipsoid mask (0 outside), channel 2 CT-like (not
    masked: its own values outside too); the seg labels part of the mask."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    inside = sum(((g - (n - 1) / 2) / (0.3 * n)) ** 2 for g, n in zip(grids, shape)) < 1
    rng = np.random.default_rng(3)
    image = rng.normal(size=shape + (3,)).astype(np.float32) + 3.0  # never exactly 0
    image[~inside, :2] = 0.0
    seg = (inside & (grids[0] > shape[0] / 2)).astype(np.uint8)
    return image, seg, inside


def _all_at_once(**extra):
    return _only(p_noise=1.0, p_blur=1.0, p_brightness=1.0, p_contrast=1.0, p_low_resolution=1.0,
                 p_gamma_inverted=1.0, p_gamma=1.0, mask_channels=(0, 1), **extra)


@pytest.mark.parametrize("spatial", [False, True])
def test_outside_the_augmented_mask_the_masked_channels_are_exactly_zero(spatial):
    image, seg, inside = _masked_case()
    settings = _all_at_once(p_rotation=1.0 if spatial else 0.0, p_scaling=1.0 if spatial else 0.0)
    for i, start in enumerate(([6, 7, 5], [-3, 8, 12])):  # the second hangs over the case's border
        seed = _seed(i, 5)
        out, out_seg = (t.numpy() for t in augmented_patch(image, seg, tf.constant(start), PATCH, settings, seed))
        # The augmented mask: the seg marked -1 outside the mask, by the same spatial draw.
        _, marked = spatial_patch(image, seg, tf.constant(start), PATCH, settings,
                                  tf.random.experimental.stateless_split(seed, 3)[0])
        outside = marked.numpy() < 0
        assert 0.1 < outside.mean() < 0.9
        assert np.all(out[..., :2][outside] == 0.0)
        assert np.all(out[..., :2][~outside] != 0.0)  # inside, the intensity transforms did act
        assert np.all(out[..., 2][outside] != 0.0)  # a channel normalized without the mask keeps its values
        assert out_seg.dtype == seg.dtype and set(np.unique(out_seg)) <= {0, 1}  # the marker is gone
        if not spatial:  # the plain crop: the mask is the case's, cut out
            np.testing.assert_array_equal(outside, ~crop(inside[..., None], start, PATCH).numpy()[..., 0])
        # Without mask channels the noise and the rest leak into what preprocessing zeroed.
        leaked = augmented_patch(image, seg, tf.constant(start), PATCH,
                                 dataclasses.replace(settings, mask_channels=()), seed)[0].numpy()
        assert np.mean(leaked[..., :2][outside] != 0.0) > 0.5


def test_the_marked_mask_turns_with_the_patch():
    image, seg, inside = _masked_case((16, 16, 16))
    matrix = rotation_matrix([0.0, 0.0, math.pi / 2], [1.0, 1.0, 1.0])
    _, marked = sample_through_grid(image, seg, tf.constant([0, 0, 0]), PATCH, matrix, mask_channels=(0,))
    expected = np.where(~inside, -1, seg.astype(np.int32))
    assert any(np.array_equal(marked.numpy(), np.rot90(expected, k, axes=(0, 1))) for k in (1, 3))


def test_nnunet_settings_carry_the_mask_channels():
    assert AugmentSettings.nnunet(PATCH, mask_channels=[0, 2]).mask_channels == (0, 2)
    assert AugmentSettings.nnunet(PATCH).mask_channels == ()


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_same_augmented_patch_and_seeds_vary():
    image, seg = _smooth_case()
    settings = dataclasses.replace(AugmentSettings.nnunet(PATCH, elastic=True), p_rotation=0.5, p_scaling=0.5)
    start = tf.constant([4, 4, 4])
    run = tf.function(lambda s: augmented_patch(image, seg, start, PATCH, settings, s))
    first = [t.numpy() for t in run(_seed(21, 1))]
    again = [t.numpy() for t in run(_seed(21, 1))]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [run(_seed(21, j))[0].numpy() for j in range(2, 6)]
    assert all(not np.array_equal(first[0], o) for o in others)


def test_a_case_with_a_zero_border_gives_the_same_patch():
    image, seg = _smooth_case()
    padded_image = np.pad(image, [(1, 1)] * 3 + [(0, 0)])
    padded_seg = np.pad(seg, 1)
    matrix = rotation_matrix([0.4, -0.3, 0.2], [1.2] * 3)
    for start in ([3, 5, 2], [-6, 20, 15]):
        plain = sample_through_grid(image, seg, tf.constant(start), PATCH, matrix)
        bordered = sample_through_grid(padded_image, padded_seg, tf.constant(start), PATCH, matrix, border=1)
        np.testing.assert_allclose(bordered[0].numpy(), plain[0].numpy(), atol=1e-6)
        np.testing.assert_array_equal(bordered[1].numpy(), plain[1].numpy())
    settings = _only(p_rotation=0.0)  # the plain crop honours the border too
    cropped = spatial_patch(padded_image, padded_seg, tf.constant([2, 3, 4]), PATCH, settings, _seed(1), border=1)
    np.testing.assert_array_equal(cropped[0].numpy(), crop(image, [2, 3, 4], PATCH).numpy())


# -- 2D patches: one voxel thick along the slice axis, augmented in the plane -------------------

@pytest.mark.parametrize("slice_axis", [0, 2])
def test_nnunet_2d_settings_work_in_the_plane(slice_axis):
    plane = tuple(a for a in range(3) if a != slice_axis)
    settings = AugmentSettings.nnunet_2d((32, 32), slice_axis, mask_channels=[1])
    assert settings.rotation_axes == (slice_axis,) and settings.rotation == pytest.approx(math.pi)
    assert (settings.scaling_axes == settings.elastic_axes == settings.low_resolution_axes == settings.blur_axes
            == settings.mirror_axes == plane)
    assert settings.mask_channels == (1,) and settings.p_elastic == 0.0
    # nnU-Net's 2d rotates an elongated patch (sides more than 1.5x apart) by 15 degrees at most.
    assert AugmentSettings.nnunet_2d((32, 64), slice_axis).rotation == pytest.approx(math.radians(15))
    assert AugmentSettings.nnunet_2d((32, 32), slice_axis, elastic=True).p_elastic == 0.2


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_a_2d_patch_stays_in_its_slice_under_every_transform(slice_axis):
    """Rotated, scaled, deformed, blurred, degraded and mirrored in the plane, a patch one voxel
    thick still reads only its own slice: a case whose channel 0 is the slice coordinate reads
    back exactly that coordinate."""
    shape = [64, 64, 64]  # room for the patch rotated and scaled up
    patch = [24, 24, 24]
    patch[slice_axis] = 1
    ramp = np.arange(64, dtype=np.float32).reshape([-1 if a == slice_axis else 1 for a in range(3)])
    image = np.stack([np.broadcast_to(ramp + 1.0, shape), _noise(tuple(shape) + (1,), 2)[..., 0]], -1).astype(np.float32)
    seg = (np.abs(_noise(tuple(shape) + (1,), 3)[..., 0]) > 1).astype(np.uint8)
    start = tf.constant([(n - p) // 2 for n, p in zip(shape, patch)])
    settings = dataclasses.replace(AugmentSettings.nnunet_2d((24, 24), slice_axis, elastic=True), p_rotation=1.0,
                                   p_scaling=1.0, p_elastic=1.0)
    for i in range(3):
        both = spatial_patch(image, seg, start, patch, settings, _seed(i, 5))[0].numpy()
        np.testing.assert_allclose(both[..., 0], 31 + 1.0, atol=1e-4)  # slice 31: (64 - 1) // 2
        assert not np.allclose(both[..., 1], crop(image, start, patch).numpy()[..., 1])  # the plane did move
    # Every intensity transform on the thick patch too (the blur and low resolution in the plane).
    everything = dataclasses.replace(settings, p_noise=1.0, p_blur=1.0, p_brightness=1.0, p_contrast=1.0,
                                     p_low_resolution=1.0, p_gamma_inverted=1.0, p_gamma=1.0, p_mirror=1.0,
                                     blur_per_channel=1.0, low_resolution_per_channel=1.0)
    img_p, seg_p = augmented_patch(image, seg, start, patch, everything, _seed(7))
    assert img_p.shape == tuple(patch) + (2,) and seg_p.shape == tuple(patch)
    assert np.isfinite(img_p.numpy()).all()
    plain = crop(image, start, patch).numpy()
    assert not np.allclose(img_p.numpy()[..., 1], plain[..., 1])
