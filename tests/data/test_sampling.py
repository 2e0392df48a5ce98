import numpy as np
import pytest
import tensorflow as tf

from unet.data.sampling import random_mirror, random_patch

PATCH = (16, 16, 16)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _volume(shape, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=tuple(shape) + (channels,)).astype(np.float32)


def test_patch_shape():
    image = _volume((30, 24, 20))
    seg = np.zeros((30, 24, 20), np.uint8)
    img_p, seg_p = random_patch(image, seg, PATCH, 0.5, _seed(1))
    assert img_p.shape == PATCH + (2,) and seg_p.shape == PATCH
    assert img_p.dtype == tf.float32 and seg_p.dtype == tf.uint8


def test_volume_smaller_than_patch_is_padded_and_kept_whole():
    image = _volume((8, 10, 12)) + 5.0  # no zeros inside the volume
    seg = np.ones((8, 10, 12), np.uint8)
    img_p, seg_p = random_patch(image, seg, PATCH, 1.0, _seed(2))
    img_p, seg_p = img_p.numpy(), seg_p.numpy()
    assert img_p.shape == PATCH + (2,) and seg_p.shape == PATCH
    # The whole volume is inside the patch, centred, and the rest is zero padding.
    assert seg_p.sum() == seg.sum()
    np.testing.assert_allclose(img_p.sum(), image.sum(), rtol=1e-5)
    np.testing.assert_array_equal(img_p[4:12, 3:13, 2:14], image)


def test_mixed_axes_smaller_and_larger_than_patch():
    image = _volume((40, 9, 16))
    seg = np.zeros((40, 9, 16), np.uint8)
    for i in range(5):
        img_p, seg_p = random_patch(image, seg, PATCH, 0.0, _seed(i))
        assert img_p.shape == PATCH + (2,) and seg_p.shape == PATCH


def test_full_foreground_probability_always_hits_foreground():
    shape = (40, 40, 40)
    image = _volume(shape)
    seg = np.zeros(shape, np.uint8)
    for point in [(35, 3, 20), (0, 39, 0), (20, 20, 39)]:
        seg[:] = 0
        seg[point] = 2
        for i in range(15):
            _, seg_p = random_patch(image, seg, PATCH, 1.0, _seed(i, 7))
            assert seg_p.numpy().max() == 2, (point, i)


def test_zero_foreground_probability_samples_uniformly():
    # A single foreground voxel is inside a uniform 16^3 window of a 40^3 volume only sometimes.
    shape = (40, 40, 40)
    seg = np.zeros(shape, np.uint8)
    seg[35, 3, 20] = 1
    image = _volume(shape)
    hits = [int(random_patch(image, seg, PATCH, 0.0, _seed(i))[1].numpy().max()) for i in range(20)]
    assert 0 in hits  # foreground_probability=0 never forces the foreground in


def test_no_foreground_falls_back_to_a_uniform_patch():
    image = _volume((30, 30, 30))
    seg = np.zeros((30, 30, 30), np.uint8)
    _, seg_p = random_patch(image, seg, PATCH, 1.0, _seed(3))
    assert seg_p.shape == PATCH and seg_p.numpy().max() == 0


def test_image_and_seg_patches_come_from_the_same_place():
    shape = (30, 26, 22)
    seg = np.random.default_rng(1).integers(0, 3, size=shape).astype(np.uint8)
    image = np.stack([seg.astype(np.float32), -seg.astype(np.float32)], axis=-1)
    for i in range(5):
        img_p, seg_p = random_patch(image, seg, PATCH, 0.5, _seed(i))
        np.testing.assert_array_equal(img_p.numpy()[..., 0], seg_p.numpy())


def test_same_seed_same_patch_and_seeds_vary():
    shape = (40, 36, 32)
    image = _volume(shape)
    seg = (np.random.default_rng(2).random(shape) > 0.99).astype(np.uint8)
    first = random_patch(image, seg, PATCH, 0.5, _seed(11, 3))
    again = random_patch(image, seg, PATCH, 0.5, _seed(11, 3))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    others = [random_patch(image, seg, PATCH, 0.5, _seed(11, j))[0].numpy() for j in range(4, 8)]
    assert any(not np.array_equal(first[0].numpy(), o) for o in others)


def _paired(shape=(6, 7, 8)):
    seg = np.random.default_rng(3).integers(0, 4, size=shape).astype(np.uint8)
    noise = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    return np.stack([seg.astype(np.float32), noise], axis=-1), seg


def test_mirror_keeps_image_and_seg_aligned():
    image, seg = _paired()
    outcomes = set()
    for i in range(12):
        img_m, seg_m = random_mirror(tf.constant(image), tf.constant(seg), _seed(i, 1))
        img_m, seg_m = img_m.numpy(), seg_m.numpy()
        np.testing.assert_array_equal(img_m[..., 0], seg_m)
        # The result is one of the 8 mirrorings, applied to both arrays.
        flips = [axes for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
                 if np.array_equal(img_m, np.flip(image, axes) if axes else image)]
        assert flips, "image is not a mirroring of the input"
        np.testing.assert_array_equal(seg_m, np.flip(seg, flips[0]) if flips[0] else seg)
        outcomes.add(flips[0])
    assert len(outcomes) > 2  # random flips, not always the same


@pytest.mark.parametrize("probability, axes", [(0.0, ()), (1.0, (0, 1, 2))])
def test_mirror_probability_extremes(probability, axes):
    image, seg = _paired()
    img_m, seg_m = random_mirror(tf.constant(image), tf.constant(seg), _seed(5), probability)
    np.testing.assert_array_equal(img_m.numpy(), np.flip(image, axes) if axes else image)
    np.testing.assert_array_equal(seg_m.numpy(), np.flip(seg, axes) if axes else seg)
