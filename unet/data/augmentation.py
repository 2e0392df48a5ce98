"""Data augmentation as nnU-Net v2's training transforms (nnUNetTrainer.get_training_transforms).

Pure TensorFlow functions on one case or patch: image (X, Y, Z, C) float32, seg (X, Y, Z). A 2D
patch is cut as a 3D patch one voxel thick along its slice axis and augmented in its plane
(`AugmentSettings.nnunet_2d`), so the same code serves both (intensity transforms: unet.data.intensity).
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
  previous  a cascade's previous stage channels (the last `previous_channels`): spatial
            transforms and mirroring as the image, back to one-hot after interpolation, no
            intensity transform, no mask; then nnU-Net's perturbations of them, random
            morphology 0.4 and removal of a random small component 0.2 (unet.data.previous_stage)
BGContrast(lo, hi) draws U(lo, 1) or U(1, hi) with equal odds. Anisotropic patches (nnU-Net's
"dummy 2D": max(patch) / patch[coarse] > 3, the coarse axis anywhere in our RAS order, see
`in_plane_axis`) are augmented in the plane across the coarse axis: rotation only about it, up
to 180 degrees; scaling, elastic deformation and low resolution in-plane; mirroring on all axes.
2D patches (the 2d configuration) are nnU-Net's 2d: rotation in the plane up to 180 degrees (15
for a patch over ELONGATED_2D times longer than wide), every transform in the plane, mirroring
over the two in-plane axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import tensorflow as tf

from unet.data.intensity import (contrast, gamma, gaussian_blur, gaussian_noise, low_resolution, maybe,
                                 multiplicative_brightness, uniform)
from unet.data.previous_stage import as_one_hot, random_morphology, remove_random_component
from unet.data.sampling import crop
from unet.data.spatial import elastic_displacement, mark_outside, rotation_matrix, sample_through_grid, zero_outside
from unet.preprocessing.spacing import ANISOTROPY_RATIO

ELONGATED_2D = 1.5  # nnU-Net's 2d: a longer patch side over this times the shorter rotates only 15 degrees


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
    blur_axes: tuple[int, ...] = (0, 1, 2)
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
    # A cascade's: the last channels are the previous stage's segmentation, one-hot (Plan.input_channels
    # - Plan.num_channels of them).
    previous_channels: int = 0
    p_previous_morphology: float = 0.4
    previous_morphology_radius: tuple[int, int] = (1, 8)
    p_previous_removal: float = 0.2
    previous_removal_fraction: float = 0.15   # only components smaller than this of the patch

    @classmethod
    def nnunet(cls, patch_size: Sequence[int], elastic: bool = False, spacing: Sequence[float] | None = None,
               mask_channels: Sequence[int] = (), previous_channels: int = 0) -> "AugmentSettings":
        """nnU-Net v2's 3d_fullres settings for this patch size; elastic deformation with 0.2.
        `spacing` (the plan's), when given, names the coarse axis (see `in_plane_axis`);
        `mask_channels` are set to 0 outside the mask after augmentation; a cascade's last
        `previous_channels` are the previous stage's."""
        settings = cls(p_elastic=0.2 if elastic else 0.0, mask_channels=tuple(int(c) for c in mask_channels),
                       previous_channels=int(previous_channels))
        coarse = in_plane_axis(patch_size, spacing)
        if coarse is not None:  # anisotropic patch: augment in the plane across the coarse axis only
            plane = tuple(a for a in range(3) if a != coarse)
            settings = replace(settings, rotation=math.pi, rotation_axes=(coarse,), scaling_axes=plane,
                               low_resolution_axes=plane, elastic_axes=plane)
        return settings

    @classmethod
    def nnunet_2d(cls, patch_size: Sequence[int], slice_axis: int, elastic: bool = False,
                  mask_channels: Sequence[int] = (), previous_channels: int = 0) -> "AugmentSettings":
        """nnU-Net v2's 2d settings for a 2D patch of `patch_size` (its two in-plane sizes), cut as
        a 3D patch one voxel thick along `slice_axis`: every spatial transform, the blur, low
        resolution and mirroring in the plane across `slice_axis`."""
        plane = tuple(a for a in range(3) if a != slice_axis)
        elongated = max(patch_size) / min(patch_size) > ELONGATED_2D
        return cls(p_elastic=0.2 if elastic else 0.0, rotation=math.radians(15 if elongated else 180),
                   rotation_axes=(int(slice_axis),), scaling_axes=plane, elastic_axes=plane, blur_axes=plane,
                   low_resolution_axes=plane, mirror_axes=plane, mask_channels=tuple(int(c) for c in mask_channels),
                   previous_channels=int(previous_channels))

    @classmethod
    def off(cls) -> "AugmentSettings":
        """No augmentation at all (every probability 0)."""
        return cls(p_rotation=0.0, p_scaling=0.0, p_elastic=0.0, p_noise=0.0, p_blur=0.0, p_brightness=0.0,
                   p_contrast=0.0, p_low_resolution=0.0, p_gamma_inverted=0.0, p_gamma=0.0, p_mirror=0.0,
                   p_previous_morphology=0.0, p_previous_removal=0.0)


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
    rotate = uniform(s[0], [], 0.0, 1.0) < settings.p_rotation
    scale = uniform(s[1], [], 0.0, 1.0) < settings.p_scaling
    deform = uniform(s[2], [], 0.0, 1.0) < settings.p_elastic
    on_axes = lambda axes: tf.constant([a in axes for a in range(3)])  # noqa: E731
    angles = uniform(s[3], [3], -settings.rotation, settings.rotation)
    angles = tf.where(tf.logical_and(rotate, on_axes(settings.rotation_axes)), angles, 0.0)
    factor = uniform(s[4], [], *settings.scaling)
    scales = tf.where(tf.logical_and(scale, on_axes(settings.scaling_axes)), factor, 1.0)

    masked = settings.mask_channels

    def resampled():
        matrix = rotation_matrix(angles, scales)
        if settings.p_elastic <= 0:
            return sample_through_grid(image, seg, start, patch, matrix, border=border, mask_channels=masked)

        def deformed():
            spacing = uniform(s[5], [], *settings.elastic_spacing) * float(max(patch))
            magnitude = uniform(s[6], [], *settings.elastic_magnitude) * float(max(patch))
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
    flips = (uniform(seed, [3], 0.0, 1.0) < probability) & tf.constant([a in axes for a in range(3)])
    drawn = tf.cast(tf.reshape(tf.where(flips), [-1]), tf.int32)  # one reverse over all drawn axes
    return tf.reverse(image, drawn), tf.reverse(seg, drawn)


def intensity_augment(image, settings: AugmentSettings, seed):
    """The intensity transforms of nnU-Net, in its order, each with its probability."""
    s = tf.random.experimental.stateless_split(seed, 14)
    image = maybe(settings.p_noise, s[0], lambda x: gaussian_noise(x, s[1], settings.noise_sigma), image)
    image = maybe(settings.p_blur, s[2], lambda x: gaussian_blur(x, s[3], settings.blur_sigma,
                                                                 settings.blur_per_channel, settings.blur_axes),
                  image)
    image = maybe(settings.p_brightness, s[4], lambda x: multiplicative_brightness(x, s[5], settings.brightness),
                  image)
    image = maybe(settings.p_contrast, s[6], lambda x: contrast(x, s[7], settings.contrast), image)
    image = maybe(settings.p_low_resolution, s[8],
                  lambda x: low_resolution(x, s[9], settings.low_resolution, settings.low_resolution_per_channel,
                                           settings.low_resolution_axes), image)
    image = maybe(settings.p_gamma_inverted, s[10], lambda x: gamma(x, s[11], settings.gamma, invert=True), image)
    return maybe(settings.p_gamma, s[12], lambda x: gamma(x, s[13], settings.gamma), image)


def augmented_patch(image, seg, start, patch_size: Sequence[int], settings: AugmentSettings, seed,
                    border: int = 0):
    """One augmented patch of a case: spatial (or plain crop), intensity, mirroring, and the
    mask channels set to 0 outside the augmented mask; a cascade's previous stage channels (the
    last `settings.previous_channels`) see the spatial transforms and mirroring only, then their
    own perturbations (`previous_stage_augment`).

    The intensity transforms work on the patch, never on the case. `border`: see spatial_patch.
    """
    patch = [int(p) for p in patch_size]
    s = tf.random.experimental.stateless_split(seed, 3)
    seg_dtype = seg.dtype
    image, seg = spatial_patch(image, seg, start, patch, settings, s[0], border)
    image = tf.ensure_shape(image, patch + [None])
    seg = tf.ensure_shape(seg, patch)
    k = settings.previous_channels
    if not k:
        image = intensity_augment(image, settings, s[1])
    else:
        previous = as_one_hot(tf.ensure_shape(image[..., -k:], patch + [k]))
        image = tf.concat([intensity_augment(image[..., :-k], settings, s[1]), previous], axis=-1)
    if settings.mask_channels:
        image, seg = zero_outside(image, seg, settings.mask_channels, seg_dtype)
    image, seg = mirror(image, seg, s[2], settings.p_mirror, settings.mirror_axes)
    if not k:
        return image, seg
    previous = previous_stage_augment(tf.ensure_shape(image[..., -k:], patch + [k]), settings,
                                      tf.random.experimental.stateless_split(s[2], 2)[1])
    return tf.concat([image[..., :-k], previous], axis=-1), seg


def previous_stage_augment(previous, settings: AugmentSettings, seed):
    """nnU-Net's perturbations of a cascade's previous stage channels (..., K - 1), each with its
    probability per patch: random morphology, then removal of a random small component; within
    the patch's axes longer than one voxel (a 2D patch: its plane)."""
    axes = [a for a, n in enumerate(previous.shape[:-1]) if n > 1]
    s = tf.random.experimental.stateless_split(seed, 4)
    previous = maybe(settings.p_previous_morphology, s[0],
                     lambda x: random_morphology(x, s[1], settings.previous_morphology_radius, axes), previous)
    return maybe(settings.p_previous_removal, s[2],
                 lambda x: remove_random_component(x, s[3], settings.previous_removal_fraction, axes), previous)
