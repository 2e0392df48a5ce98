"""Each intensity transform of unet.data.intensity on its own (their probabilities and chaining:
tests/data/test_augmentation.py)."""

import numpy as np
import pytest
import tensorflow as tf

from unet.data import intensity

PATCH = (16, 16, 16)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _noise(shape=PATCH + (2,), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_gaussian_noise_adds_small_noise():
    image = np.zeros(PATCH + (2,), np.float32)
    out = intensity.gaussian_noise(image, _seed(1)).numpy()
    assert 0 < out.std() <= 0.1 + 0.01
    assert abs(out.mean()) < 0.01


def test_gaussian_blur_smooths_chosen_channels_and_keeps_constants():
    image = _noise()
    out = intensity.gaussian_blur(image, _seed(2), per_channel=1.0).numpy()
    assert out[..., 0].std() < 0.7 * image[..., 0].std() and out[..., 1].std() < 0.7 * image[..., 1].std()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), image.mean(axis=(0, 1, 2)), atol=0.02)
    untouched = intensity.gaussian_blur(image, _seed(2), per_channel=0.0).numpy()
    np.testing.assert_array_equal(untouched, image)
    const = np.full(PATCH + (2,), 3.0, np.float32)
    np.testing.assert_allclose(intensity.gaussian_blur(const, _seed(3), per_channel=1.0).numpy(), const, rtol=1e-5)


def test_multiplicative_brightness_scales_each_channel():
    image = _noise() + 5.0
    out = intensity.multiplicative_brightness(image, _seed(3)).numpy()
    ratio = out / image
    for c in range(2):
        assert np.ptp(ratio[..., c]) < 1e-5
        assert 0.75 <= ratio[..., c].mean() <= 1.25


def test_contrast_keeps_mean_and_range():
    image = _noise()
    out = intensity.contrast(image, _seed(4)).numpy()
    assert not np.allclose(out, image)
    for c in range(2):
        assert out[..., c].min() >= image[..., c].min() and out[..., c].max() <= image[..., c].max()
        inner = np.abs(image[..., c] - image[..., c].mean()) < 1.0  # not clipped there: a linear map
        slope = np.polyfit(image[..., c][inner], out[..., c][inner], 1)[0]
        assert 0.75 <= slope <= 1.25


def test_low_resolution_is_blocky_and_keeps_constants():
    image = _noise()
    out = intensity.low_resolution(tf.constant(image), _seed(5), scale_range=(0.5, 0.5), per_channel=1.0).numpy()
    assert out.shape == image.shape
    # Half resolution: neighbours along each axis are interpolated from 8 source values, less rough.
    rough = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731
    assert rough(out) < 0.8 * rough(image)
    untouched = intensity.low_resolution(tf.constant(image), _seed(5), per_channel=0.0).numpy()
    np.testing.assert_allclose(untouched, image, atol=1e-6)
    const = np.full(PATCH + (2,), -2.0, np.float32)
    np.testing.assert_allclose(intensity.low_resolution(tf.constant(const), _seed(6), per_channel=1.0).numpy(),
                               const, atol=1e-6)


@pytest.mark.parametrize("invert", [False, True])
def test_gamma_keeps_mean_std_and_order(invert):
    image = _noise()
    out = intensity.gamma(image, _seed(7), invert=invert).numpy()
    assert not np.allclose(out, image, atol=1e-4)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), image.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), image.std(axis=(0, 1, 2)), rtol=1e-3)
    for c in range(2):  # a monotonic map: the voxel order is kept
        order = np.argsort(image[..., c].ravel())
        assert np.all(np.diff(out[..., c].ravel()[order]) >= -1e-5)
