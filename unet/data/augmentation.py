"""Data augmentation as nnU-Net v2's training transforms (nnUNetTrainer.get_training_transforms).

Pure TensorFlow functions on one case or patch: image (X, Y, Z, C) float32, seg (X, Y, Z); 3D only.
Every random draw is a stateless op from an explicit seed (a shape-(2,) int tensor), split into
one sub-seed per transform up front, so the same seed gives the same patch whichever transforms
fire. They run inside the tf.data map, on its CPU threads.

In nnU-Net's order, each with its probability per patch:
  spatial   rotation 0.2 (each axis U(-30, 30) degrees), scaling 0.2 (U(0.7, 1.4), all axes alike),
            elastic deformation 0.2 if `elastic` (smooth field, peak U(0, 0.05) of the patch,
            control points U(0.1, 0.2) of the patch apart: our parametrization, nnU-Net's
            default trainer has it off); any drawn, the patch is sampled through the transformed
            grid (unet.data.spatial), else cut out plainly (the fast path)
  noise     0.1: Gaussian, sigma U(0, 0.1), same sigma for all channels
  blur      0.2: each channel with 0.5, sigma U(0.5, 1) per axis and channel
  brightness 0.15: each channel times m, m as BGContrast(0.75, 1.25)
  contrast  0.15: each channel (x - mean) * f + mean, clipped to its old range
  low res   0.25: each channel with 0.5, nearest down to U(0.5, 1) of its size, linear back up
  gamma     0.1 on the inverted image, then 0.3 plain: per channel, gamma as BGContrast(0.7, 1.5),
            mean and std kept
  mirror    each axis with 0.5
  mask      channels z-scored inside the non-zero mask (`mask_channels`): 0 again outside the
            augmented mask and the case, as nnU-Net's MaskImageTransform
BGContrast(lo, hi) draws U(lo, 1) or U(1, hi) with equal odds. Anisotropic patches (nnU-Net's
"dummy 2D": max(patch) / patch[coarse] > 3, the coarse axis anywhere in our RAS order, see
`in_plane_axis`) are augmented in the plane across the coarse axis: rotation only about it, up
to 180 degrees; scaling, elastic deformation and low resolution in-plane; mirroring on all axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import tensorflow as tf

from unet.data.sampling import crop
from unet.data.spatial import elastic_displacement, mark_outside, rotation_matrix, sample_through_grid, zero_outside
from unet.preprocessing.spacing import ANISOTROPY_RATIO


@dataclass(frozen=True)
class AugmentSettings:
    p_rotation: float = 0.2
    rotation: float = math.radians(30)           # angles U(-rotation, rotation)
    rotation_axes: tuple[int, ...] = (0, 1, 2)
    p_scaling: float = 0.2
    scaling: tuple[float, float] = (0.7, 1.4)
    scaling_axes: tuple[int, ...] = (0, 1, 2)
    p_elastic: float = 0.0
    elastic_spacing: tuple[float, float] = (0.1, 0.2)    # control points apart, fraction of the patch
    elastic_magnitude: tuple[float, float] = (0.0, 0.05)  # max displacement, fraction of the patch
    p_noise: float = 0.1
    noise_sigma: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    blur_per_channel: float = 0.5
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_low_resolution: float = 0.25
    low_resolution: tuple[float, float] = (0.5, 1.0)
    low_resolution_per_channel: float = 0.5
    low_resolution_axes: tuple[int, ...] = (0, 1, 2)
    elastic_axes: tuple[int, ...] = (0, 1, 2)  # axes the deformation moves along and varies over
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    p_mirror: float = 0.5
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    mask_channels: tuple[int, ...] = ()  # normalized inside the non-zero mask (Plan.mask_channels)

    @classmethod
    def nnunet(cls, patch_size: Sequence[int], elastic: bool = False, spacing: Sequence[float] | None = None,
               mask_channels: Sequence[int] = ()) -> "AugmentSettings":
        """nnU-Net v2's 3d_fullres settings for this patch size; elastic deformation with 0.2.
        `spacing` (the plan's), when given, names the coarse axis (see `in_plane_axis`);
        `mask_channels` are set to 0 outside the mask after augmentation."""
        settings = cls(p_elastic=0.2 if elastic else 0.0, mask_channels=tuple(int(c) for c in mask_channels))
        coarse = in_plane_axis(patch_size, spacing)
        if coarse is not None:  # anisotropic patch: augment in the plane across the coarse axis only
            plane = tuple(a for a in range(3) if a != coarse)
            settings = replace(settings, rotation=math.pi, rotation_axes=(coarse,), scaling_axes=plane,
                               low_resolution_axes=plane, elastic_axes=plane)
        return settings

    @classmethod
    def off(cls) -> "AugmentSettings":
        """No augmentation at all (every probability 0)."""
        return cls(p_rotation=0.0, p_scaling=0.0, p_elastic=0.0, p_noise=0.0, p_blur=0.0, p_brightness=0.0,
                   p_contrast=0.0, p_low_resolution=0.0, p_gamma_inverted=0.0, p_gamma=0.0, p_mirror=0.0)


def in_plane_axis(patch_size: Sequence[int], spacing: Sequence[float] | None = None) -> int | None:
    """The coarse axis of an anisotropic patch, or None for a patch augmented in 3D.

    nnU-Net moves the axis of the coarsest spacing first and augments in 2D when max(patch) /
    patch[0] > ANISOTROPY_RATIO. The coarse axis: the largest `spacing`'s (the first of equals,
    as nnU-Net's argmax) or, without one, the patch's thinnest (the planner shapes the patch
    after the spacing, so for anisotropic data both name the same axis)."""
    patch = [int(p) for p in patch_size]
    candidates = [float(s) for s in spacing] if spacing is not None else [-p for p in patch]
    coarse = max(range(3), key=lambda a: (candidates[a], -a))
    return coarse if max(patch) / patch[coarse] > ANISOTROPY_RATIO else None


# -- random draws -------------------------------------------------------------------------------

def _uniform(seed, shape, low, high):
    return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.float32)


def _bg_contrast(seed, shape, low, high):
    """batchgeneratorsv2's BGContrast: U(low, 1) or U(max(low, 1), high), each with odds 1/2."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    below = _uniform(seeds[0], shape, 0.0, 1.0) < 0.5
    u = _uniform(seeds[1], shape, 0.0, 1.0)
    if low >= 1:
        return low + u * (high - low)
    return tf.where(below, low + u * (1.0 - low), 1.0 + u * (high - 1.0))


def _maybe(probability: float, seed, apply, image):
    """apply(image) with `probability`, else image unchanged; no graph at all for probability 0."""
    if probability <= 0:
        return image
    if probability >= 1:
        return apply(image)
    fire = _uniform(seed, [], 0.0, 1.0) < probability
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


# -- spatial ------------------------------------------------------------------------------------

def spatial_patch(image, seg, start, patch_size: Sequence[int], settings: AugmentSettings, seed,
                  border: int = 0):
    """The patch at `start`, rotated / scaled / deformed when drawn, else a plain crop.

    `border`: layers of zeros the case carries around it (see sample_through_grid); `start` is
    in the coordinates without them. With `settings.mask_channels` the seg comes back int32,
    -1 outside the mask (`unet.data.spatial.mark_outside`).
    """
    patch = [int(p) for p in patch_size]
    s = tf.random.experimental.stateless_split(seed, 8)
    rotate = _uniform(s[0], [], 0.0, 1.0) < settings.p_rotation
    scale = _uniform(s[1], [], 0.0, 1.0) < settings.p_scaling
    deform = _uniform(s[2], [], 0.0, 1.0) < settings.p_elastic
    on_axes = lambda axes: tf.constant([a in axes for a in range(3)])  # noqa: E731
    angles = _uniform(s[3], [3], -settings.rotation, settings.rotation)
    angles = tf.where(tf.logical_and(rotate, on_axes(settings.rotation_axes)), angles, 0.0)
    factor = _uniform(s[4], [], *settings.scaling)
    scales = tf.where(tf.logical_and(scale, on_axes(settings.scaling_axes)), factor, 1.0)

    masked = settings.mask_channels

    def resampled():
        matrix = rotation_matrix(angles, scales)
        if settings.p_elastic <= 0:
            return sample_through_grid(image, seg, start, patch, matrix, border=border, mask_channels=masked)

        def deformed():
            spacing = _uniform(s[5], [], *settings.elastic_spacing) * float(max(patch))
            magnitude = _uniform(s[6], [], *settings.elastic_magnitude) * float(max(patch))
            displacement = elastic_displacement(patch, spacing, magnitude, s[7], settings.elastic_axes)
            return sample_through_grid(image, seg, start, patch, matrix, displacement, border=border,
                                       mask_channels=masked)

        plain = lambda: sample_through_grid(image, seg, start, patch, matrix, border=border,  # noqa: E731
                                            mask_channels=masked)
        return tf.cond(deform, deformed, plain)

    def cropped():
        image_patch = crop(image, start + border, patch)
        return image_patch, mark_outside(image_patch, crop(seg, start + border, patch), masked)

    return tf.cond(rotate | scale | deform, resampled, cropped)


def mirror(image, seg, seed, probability: float = 0.5, axes: Sequence[int] = (0, 1, 2)):
    """Flip each of `axes` independently with `probability`, image and seg alike."""
    flips = (_uniform(seed, [3], 0.0, 1.0) < probability) & tf.constant([a in axes for a in range(3)])
    drawn = tf.cast(tf.reshape(tf.where(flips), [-1]), tf.int32)  # one reverse over all drawn axes
    return tf.reverse(image, drawn), tf.reverse(seg, drawn)


# -- intensity (image only) -------------------------------------------------------------------

def gaussian_noise(image, seed, sigma_range=(0.0, 0.1)):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    sigma = _uniform(seeds[0], [], *sigma_range)
    return image + sigma * tf.random.stateless_normal(tf.shape(image), seeds[1])


def _gaussian_kernels(sigmas, radius: int):
    """(C, 2 * radius + 1) normalized Gaussian kernels for sigmas (C,); sigma 0 is the identity."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    safe = tf.maximum(sigmas, 1e-3)[:, None]
    kernel = tf.exp(-0.5 * (x[None, :] / safe) ** 2)
    return kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)


def gaussian_blur(image, seed, sigma_range=(0.5, 1.0), per_channel: float = 0.5):
    """Separable Gaussian blur with reflected borders, per channel (with `per_channel`) and axis."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    channels = tf.shape(image)[-1]
    chosen = _uniform(seeds[0], [channels], 0.0, 1.0) < per_channel
    sigmas = tf.where(chosen[None, :], _uniform(seeds[1], [3, channels], *sigma_range), 0.0)
    radius = max(1, math.ceil(3 * sigma_range[1]))
    width = 2 * radius + 1
    x, y, z = tf.unstack(tf.shape(image)[:3])
    out = image
    for axis in range(3):
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
    factors = _bg_contrast(seed, [tf.shape(image)[-1]], *multiplier_range)
    return image * _channel_view(factors)


def contrast(image, seed, factor_range=(0.75, 1.25)):
    """(x - mean) * f + mean per channel, clipped to the channel's previous range."""
    factors = _channel_view(_bg_contrast(seed, [tf.shape(image)[-1]], *factor_range))
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
    chosen = _uniform(seeds[0], [channels], 0.0, 1.0) < per_channel
    factors = _uniform(seeds[1], [channels], *scale_range)
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
    g = _channel_view(_bg_contrast(seed, [tf.shape(image)[-1]], *gamma_range))
    x = -image if invert else image
    mean, std, low, high = _statistics(x)
    span = tf.maximum(high - low, epsilon)
    # x ** g as exp(g log x): several times faster than tf.pow on CPU; log(0) = -inf gives 0.
    y = tf.exp(g * tf.math.log((x - low) / span))
    new_mean, new_std = _statistics(y, extremes=False)
    x = (y - new_mean) * (std / tf.maximum(new_std, epsilon)) + mean
    return -x if invert else x


def intensity_augment(image, settings: AugmentSettings, seed):
    """The intensity transforms of nnU-Net, in its order, each with its probability."""
    s = tf.random.experimental.stateless_split(seed, 14)
    image = _maybe(settings.p_noise, s[0], lambda x: gaussian_noise(x, s[1], settings.noise_sigma), image)
    image = _maybe(settings.p_blur, s[2],
                   lambda x: gaussian_blur(x, s[3], settings.blur_sigma, settings.blur_per_channel), image)
    image = _maybe(settings.p_brightness, s[4],
                   lambda x: multiplicative_brightness(x, s[5], settings.brightness), image)
    image = _maybe(settings.p_contrast, s[6], lambda x: contrast(x, s[7], settings.contrast), image)
    image = _maybe(settings.p_low_resolution, s[8],
                   lambda x: low_resolution(x, s[9], settings.low_resolution, settings.low_resolution_per_channel,
                                            settings.low_resolution_axes), image)
    image = _maybe(settings.p_gamma_inverted, s[10], lambda x: gamma(x, s[11], settings.gamma, invert=True), image)
    return _maybe(settings.p_gamma, s[12], lambda x: gamma(x, s[13], settings.gamma), image)


def augmented_patch(image, seg, start, patch_size: Sequence[int], settings: AugmentSettings, seed,
                    border: int = 0):
    """One augmented patch of a case: spatial (or plain crop), intensity, mirroring, and the
    mask channels set to 0 outside the augmented mask.

    The intensity transforms work on the patch, never on the case. `border`: see spatial_patch.
    """
    patch = [int(p) for p in patch_size]
    s = tf.random.experimental.stateless_split(seed, 3)
    seg_dtype = seg.dtype
    image, seg = spatial_patch(image, seg, start, patch, settings, s[0], border)
    image = tf.ensure_shape(image, patch + [None])
    seg = tf.ensure_shape(seg, patch)
    image = intensity_augment(image, settings, s[1])
    if settings.mask_channels:
        image, seg = zero_outside(image, seg, settings.mask_channels, seg_dtype)
    return mirror(image, seg, s[2], settings.p_mirror, settings.mirror_axes)
