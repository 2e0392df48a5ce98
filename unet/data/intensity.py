"""Intensity augmentation as nnU-Net v2's (image only): noise, blur, brightness, contrast, low
resolution and gamma, and the random draws every transform shares.

Pure TensorFlow functions on one patch, image (X, Y, Z, C) float32; each draws from an explicit
stateless seed (a shape-(2,) int tensor). `unet.data.augmentation` chains them with nnU-Net's
probabilities (`intensity_augment`). A 2D patch is one voxel thick along its slice axis: the
transforms that work along axes (blur, low resolution) take the in-plane axes only.
"""

from __future__ import annotations

import math

import tensorflow as tf


# -- random draws -------------------------------------------------------------------------------

def uniform(seed, shape, low, high):
    return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.float32)


def bg_contrast(seed, shape, low, high):
    """batchgeneratorsv2's BGContrast: U(low, 1) or U(max(low, 1), high), each with odds 1/2."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    below = uniform(seeds[0], shape, 0.0, 1.0) < 0.5
    u = uniform(seeds[1], shape, 0.0, 1.0)
    if low >= 1:
        return low + u * (high - low)
    return tf.where(below, low + u * (1.0 - low), 1.0 + u * (high - 1.0))


def maybe(probability: float, seed, apply, image):
    """apply(image) with `probability`, else image unchanged; no graph at all for probability 0."""
    if probability <= 0:
        return image
    if probability >= 1:
        return apply(image)
    fire = uniform(seed, [], 0.0, 1.0) < probability
    return tf.cond(fire, lambda: apply(image), lambda: image)


def _channel_view(values):
    return tf.reshape(values, [1, 1, 1, -1])


def _channels_first(image):
    """(C, voxels): reductions along the last axis run about 3x faster than over (voxels, C),
    which pays for the transpose from two reductions on."""
    return tf.reshape(tf.transpose(image, [3, 0, 1, 2]), [tf.shape(image)[-1], -1])


def _statistics(image, extremes: bool = True):
    """Per channel mean, std (and min, max), each shaped (1, 1, 1, C)."""
    flat = _channels_first(image)
    mean = tf.reduce_mean(flat, axis=1)
    std = tf.sqrt(tf.maximum(tf.reduce_mean(tf.square(flat), axis=1) - tf.square(mean), 0.0))
    stats = [mean, std] + ([tf.reduce_min(flat, axis=1), tf.reduce_max(flat, axis=1)] if extremes else [])
    return [_channel_view(v) for v in stats]


# -- intensity (image only) -------------------------------------------------------------------

def gaussian_noise(image, seed, sigma_range=(0.0, 0.1)):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    sigma = uniform(seeds[0], [], *sigma_range)
    return image + sigma * tf.random.stateless_normal(tf.shape(image), seeds[1])


def _gaussian_kernels(sigmas, radius: int):
    """(C, 2 * radius + 1) normalized Gaussian kernels for sigmas (C,); sigma 0 is the identity."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    safe = tf.maximum(sigmas, 1e-3)[:, None]
    kernel = tf.exp(-0.5 * (x[None, :] / safe) ** 2)
    return kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)


def gaussian_blur(image, seed, sigma_range=(0.5, 1.0), per_channel: float = 0.5, axes=(0, 1, 2)):
    """Separable Gaussian blur with reflected borders, per channel (with `per_channel`) and axis,
    along `axes` (a 2D patch: its two in-plane axes)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    channels = tf.shape(image)[-1]
    chosen = uniform(seeds[0], [channels], 0.0, 1.0) < per_channel
    sigmas = tf.where(chosen[None, :], uniform(seeds[1], [3, channels], *sigma_range), 0.0)
    radius = max(1, math.ceil(3 * sigma_range[1]))
    width = 2 * radius + 1
    x, y, z = tf.unstack(tf.shape(image)[:3])
    out = image
    for axis in axes:
        kernel = tf.transpose(_gaussian_kernels(sigmas[axis], radius))  # (width, C)
        paddings = [[0, 0]] * 4
        paddings[axis] = [radius, radius]
        padded = tf.pad(out, paddings, mode="REFLECT")
        if axis == 0:  # (1, X + 2r, Y * Z, C), kernel along height
            padded = tf.reshape(padded, [1, x + 2 * radius, y * z, channels])
            filt = tf.reshape(kernel, [width, 1, channels, 1])
        elif axis == 1:  # batch X, height Y + 2r, width Z
            filt = tf.reshape(kernel, [width, 1, channels, 1])
        else:
            filt = tf.reshape(kernel, [1, width, channels, 1])
        out = tf.nn.depthwise_conv2d(padded, filt, [1, 1, 1, 1], "VALID")
        out = tf.reshape(out, tf.shape(image))
    # Channels not chosen keep their exact values (their kernels are deltas up to rounding).
    return tf.where(chosen, out, image)


def multiplicative_brightness(image, seed, multiplier_range=(0.75, 1.25)):
    factors = bg_contrast(seed, [tf.shape(image)[-1]], *multiplier_range)
    return image * _channel_view(factors)


def contrast(image, seed, factor_range=(0.75, 1.25)):
    """(x - mean) * f + mean per channel, clipped to the channel's previous range."""
    factors = _channel_view(bg_contrast(seed, [tf.shape(image)[-1]], *factor_range))
    mean, _, low, high = _statistics(image)
    return tf.clip_by_value(image * factors + mean * (1 - factors), low, high)


def _resize3d(volume, size, method: str):
    """Resize (X, Y, Z) to `size` (3,) as two 2D resizes (axes 1, 2, then axis 0).

    Half-pixel centres: "nearest" is torch's nearest-exact, "bilinear" its linear interpolation
    with align_corners=False; the axis left alone in each 2D resize is copied exactly.
    """
    x = tf.shape(volume)[0]
    plane = tf.image.resize(volume[..., None], size[1:], method=method)
    lines = tf.reshape(plane, tf.stack([1, x, size[1] * size[2], 1]))
    lines = tf.image.resize(lines, tf.stack([size[0], size[1] * size[2]]), method=method)
    return tf.reshape(lines, size)


def low_resolution(image, seed, scale_range=(0.5, 1.0), per_channel: float = 0.5, axes=(0, 1, 2)):
    """Simulated low resolution per channel (with `per_channel`): nearest-exact down to a scale
    U(scale_range) of the size along `axes` (one scale for all of them), linear back up."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    channels = tf.shape(image)[-1]
    chosen = uniform(seeds[0], [channels], 0.0, 1.0) < per_channel
    factors = uniform(seeds[1], [channels], *scale_range)
    shape = tf.shape(image)[:3]
    on_axes = tf.constant([a in axes for a in range(3)])

    def one(args):
        volume, factor, apply = args

        def degrade():
            small = tf.where(on_axes, tf.cast(tf.round(tf.cast(shape, tf.float32) * factor), tf.int32), shape)
            small = tf.maximum(small, 1)
            return _resize3d(_resize3d(volume, small, "nearest"), shape, "bilinear")

        return tf.cond(apply, degrade, lambda: volume)

    channels_first = tf.transpose(image, [3, 0, 1, 2])
    out = tf.map_fn(one, (channels_first, factors, chosen), fn_output_signature=tf.float32)
    return tf.transpose(out, [1, 2, 3, 0])


def gamma(image, seed, gamma_range=(0.7, 1.5), invert: bool = False, epsilon: float = 1e-7):
    """Per channel x -> range * ((x - min) / range) ** g + min, then the old mean and std restored.

    `invert` applies it to -image (and negates back), brightening dark values instead. Restoring
    mean and std undoes any affine map, so the rescaling by range and min is skipped.
    """
    g = _channel_view(bg_contrast(seed, [tf.shape(image)[-1]], *gamma_range))
    x = -image if invert else image
    mean, std, low, high = _statistics(x)
    span = tf.maximum(high - low, epsilon)
    # x ** g as exp(g log x): several times faster than tf.pow on CPU; log(0) = -inf gives 0.
    y = tf.exp(g * tf.math.log((x - low) / span))
    new_mean, new_std = _statistics(y, extremes=False)
    x = (y - new_mean) * (std / tf.maximum(new_std, epsilon)) + mean
    return -x if invert else x
