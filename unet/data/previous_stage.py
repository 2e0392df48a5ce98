"""Augmenting a cascade's previous stage channels, as nnU-Net v2's cascaded training transforms.

A 3d_cascade_fullres patch's image carries, after the image channels, the previous stage's
segmentation as one-hot channels of the foreground classes (`unet.preprocessing.cascade`). They
move with the image through the spatial transforms, read there with linear interpolation like
the image; `as_one_hot` then gives each voxel the class whose interpolated indicator is largest
(background: 1 minus the others), which is nnU-Net's per-label linear interpolation and argmax
of a segmentation. Intensity transforms and the non-zero mask leave them alone
(`unet.data.augmentation`). Then nnU-Net perturbs them, so the network learns not to copy the
previous stage blindly:

- `random_morphology` (probability 0.4 per patch): every foreground channel, in random order,
  dilated, eroded, opened or closed (one drawn per channel) with a structuring element of radius
  U{1..8}; voxels a dilation adds leave the other channels. nnU-Net's element is a ball; ours
  is built by alternating 6- and 26-neighbour steps (an octagon-like approximation of it), so it
  stays a chain of shifted maxima instead of a 17^3 convolution. What lies outside the patch
  neither grows into it nor erodes it (the patch's border is not the structure's).
- `remove_random_component` (probability 0.2 per patch): in every foreground channel, one
  connected component (26-connected, as skimage's default) drawn uniformly among those covering
  less than 15 % of the patch is set to 0.

Pure TensorFlow on one patch (..., K - 1) float32, stateless random draws from explicit seeds.
Axes of size 1 (a 2D patch cut one voxel thick) are left out of the structuring element.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def as_one_hot(channels):
    """Interpolated one-hot channels of the foreground classes (..., K - 1) back to one-hot: the
    class (background included, as 1 - their sum) with the largest value, ties to the lower."""
    background = 1.0 - tf.reduce_sum(channels, axis=-1, keepdims=True)
    best = tf.argmax(tf.concat([background, channels], axis=-1), axis=-1)
    return tf.one_hot(best, tf.shape(channels)[-1] + 1, dtype=channels.dtype)[..., 1:]


def _shifted(volume, axis: int):
    """The volume's two neighbours along `axis` (zero beyond the border), as (before, after)."""
    pad = [[0, 0]] * len(volume.shape)
    pad[axis] = [1, 1]
    padded = tf.pad(volume, pad)
    before = (slice(None),) * axis
    return padded[before + (slice(None, -2),)], padded[before + (slice(2, None),)]


def neighbour_max(volume, axes: Sequence[int], cube: bool):
    """Max over each voxel and its neighbours along `axes`: the 26-neighbourhood (a cube, as
    separable passes) or the 6-neighbourhood (a cross); zero beyond the border."""
    out = volume
    for axis in axes:
        if cube:
            out = tf.maximum(out, tf.maximum(*_shifted(out, axis)))
        else:
            out = tf.maximum(out, tf.maximum(*_shifted(volume, axis)))
    return out


def _step(mask, i, axes):
    """Step `i` of a dilation: a cross at even steps, a cube at odd ones."""
    return tf.cond(tf.equal(i % 2, 0), lambda: neighbour_max(mask, axes, cube=False),
                   lambda: neighbour_max(mask, axes, cube=True))


def dilate(mask, radius, axes: Sequence[int]):
    """Binary dilation of a 0/1 float mask by a ball-like element of `radius` voxels (alternating
    6- and 26-neighbour steps); nothing grows in from outside the patch."""
    _, out = tf.while_loop(lambda i, m: i < radius, lambda i, m: (i + 1, _step(m, i, axes)), (tf.constant(0), mask))
    return out


def erode(mask, radius, axes: Sequence[int]):
    """Binary erosion, the dual of `dilate`: outside the patch counts as unknown, so nothing is
    eroded from the patch's border (it is not the structure's)."""
    return 1.0 - dilate(1.0 - mask, radius, axes)


def random_morphology(channels, seed, radius_range: tuple[int, int], axes: Sequence[int]):
    """Every channel, in random order, dilated, eroded, opened or closed (drawn per channel) with
    a radius U{radius_range}; voxels a dilation adds are cleared in the other channels."""
    k = int(channels.shape[-1])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    order = tf.argsort(tf.random.stateless_uniform([k], seeds[0]))
    operators = tf.random.stateless_uniform([k], seeds[1], 0, 4, dtype=tf.int32)
    radii = tf.random.stateless_uniform([k], seeds[2], radius_range[0], radius_range[1] + 1, dtype=tf.int32)
    for i in range(k):
        c = order[i]
        mask = tf.gather(channels, c, axis=-1)
        r = radii[c]
        result = tf.switch_case(operators[c], [
            lambda: dilate(mask, r, axes),
            lambda: erode(mask, r, axes),
            lambda: dilate(erode(mask, r, axes), r, axes),   # opening
            lambda: erode(dilate(mask, r, axes), r, axes),   # closing
        ])
        added = (result > 0) & ~(mask > 0)
        this = tf.equal(tf.range(k), c)
        channels = tf.where(this, result[..., None], tf.where(added[..., None], 0.0, channels))
    return channels


def connected_components(mask, axes: Sequence[int]):
    """Labels (int32, the volume's shape) of the 26-connected components of a boolean mask: each
    component's voxels hold one id > 0 (its largest flat index + 1), background 0.

    Every voxel starts with its own id; each round takes the largest id among its neighbours in
    the mask, then follows its id to the voxel it names and takes that voxel's id (pointer
    jumping: ids travel along chains in a few rounds, not one voxel per round), until no id changes."""
    shape = tf.shape(mask)
    inside = tf.cast(mask, tf.int32)
    ids = tf.reshape(tf.range(1, tf.size(mask) + 1, dtype=tf.int32), shape) * inside

    def round_(ids, _):
        grown = neighbour_max(ids, axes, cube=True) * inside
        flat = tf.reshape(grown, [-1])
        jumped = tf.reshape(tf.gather(flat, tf.maximum(flat - 1, 0)), shape) * inside
        new = tf.maximum(grown, jumped)
        return new, tf.reduce_any(tf.not_equal(new, ids))

    ids, _ = tf.while_loop(lambda ids, changed: changed, round_, (ids, tf.constant(True)))
    return ids


def remove_random_component(channels, seed, max_fraction: float, axes: Sequence[int]):
    """In every channel, one 26-connected component drawn uniformly among those covering less than
    `max_fraction` of the patch's voxels set to 0 (nothing where there is none)."""
    k = int(channels.shape[-1])
    seeds = tf.random.experimental.stateless_split(seed, k)
    total = tf.cast(tf.reduce_prod(tf.shape(channels)[:-1]), tf.float32)
    out = []
    for c in range(k):
        mask = channels[..., c] > 0

        def remove(mask=mask, seed=seeds[c]):
            ids = connected_components(mask, axes)
            found, _, sizes = tf.unique_with_counts(tf.boolean_mask(ids, mask))
            small = tf.boolean_mask(found, tf.cast(sizes, tf.float32) < max_fraction * total)
            n = tf.shape(small)[0]
            pick = tf.random.stateless_uniform([], seed, 0, tf.maximum(n, 1), dtype=tf.int32)
            chosen = tf.cond(n > 0, lambda: small[pick], lambda: tf.constant(0))
            return mask & ~tf.equal(ids, chosen)  # chosen 0 (none small enough): ids 0 only outside the mask

        kept = tf.cond(tf.reduce_any(mask), remove, lambda: mask)
        out.append(tf.cast(kept, channels.dtype))
    return tf.stack(out, axis=-1)
