"""Where a patch comes from: foreground oversampling from recorded locations, and zero-padded crops.

TensorFlow ops, run inside tf.data. A patch's place is its `start` corner in voxel coordinates of
the case; it may lie partly outside the volume when the volume is smaller than the patch (then the
volume sits centred in the patch, the rest is zero padding), never otherwise: a patch centred on
a foreground voxel is shifted back inside, as before (nnU-Net lets it hang over the upper border).

A 2D patch (a 2d plan's, along its in-plane axes) is cut as a 3D patch one voxel thick along the
plan's slice axis (`volume_patch`): centred on a foreground voxel it lies in that voxel's slice
and is centred on it in-plane, otherwise its slice is uniform. nnU-Net's 2d loader draws a class,
a slice among that class's recorded locations, then a location of the class in that slice: the
same distribution as drawing the location first and taking its slice.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def crop(volume, start, size):
    """`volume[start:start + size]` over the first three axes, zero where it lies outside.

    `start` may be negative or beyond the volume; only the overlapping part is copied.
    """
    start = tf.cast(start, tf.int32)
    size = tf.cast(size, tf.int32)
    shape = tf.shape(volume)[:3]
    lo = tf.clip_by_value(start, 0, shape)
    hi = tf.clip_by_value(start + size, lo, shape)
    extra = tf.rank(volume) - 3  # the channel axis of an image, none for a seg
    piece = tf.slice(volume, tf.concat([lo, tf.zeros([extra], tf.int32)], 0),
                     tf.concat([hi - lo, -tf.ones([extra], tf.int32)], 0))
    before = tf.clip_by_value(lo - start, 0, size)  # all of it when the patch misses the volume
    after = size - (hi - lo) - before
    paddings = tf.concat([tf.stack([before, after], axis=1), tf.zeros([extra, 2], tf.int32)], 0)
    return tf.pad(piece, paddings)


def volume_patch(patch_size: Sequence[int], slice_axis: int | None = None) -> tuple[int, ...]:
    """The 3D patch a patch is cut as: `patch_size` itself, or for a 2D patch (`slice_axis` given,
    `patch_size` the two in-plane sizes) one voxel thick along `slice_axis`."""
    patch = [int(p) for p in patch_size]
    if slice_axis is None:
        return tuple(patch)
    if len(patch) != 2 or slice_axis not in (0, 1, 2):
        raise ValueError(f"a 2D patch has 2 sizes and a slice axis 0, 1 or 2; got {tuple(patch)}, {slice_axis}")
    patch.insert(slice_axis, 1)
    return tuple(patch)


def drop_slice_axis(image, seg, slice_axis: int | None):
    """A patch cut by `volume_patch` as the 2D patch it is (image (a, b, C), seg (a, b)); a 3D
    patch (`slice_axis` None) unchanged."""
    if slice_axis is None:
        return image, seg
    return tf.squeeze(image, axis=slice_axis), tf.squeeze(seg, axis=slice_axis)


def _start_range(shape, patch):
    """Inclusive range of start corners: inside the volume, or centred when it is smaller."""
    pad = tf.maximum(patch - shape, 0)
    low = -(pad // 2)
    return low, low + tf.maximum(shape - patch, 0)


def foreground_voxel(locations, seed):
    """A recorded location of a class drawn uniformly among the classes present, as (x, y, z).

    `locations` is (N, 4) int32, rows (class index, x, y, z), N > 0. Works on the N rows only,
    never on the volume.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    classes, which = tf.unique(locations[:, 0])
    pick_class = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(classes)[0], dtype=tf.int32)
    rows = tf.reshape(tf.where(tf.equal(which, pick_class)), [-1])
    pick_row = tf.random.stateless_uniform([], seeds[1], 0, tf.shape(rows)[0], dtype=tf.int32)
    return locations[rows[pick_row], 1:]


OVERSAMPLING_RULES = ("bernoulli", "nnunet")


def foreground_probability(rule: str, oversampling: float, index, batch_size: int):
    """The probability that patch `index` of an epoch is centred on foreground (`patch_start`).

    bernoulli: `oversampling` for every patch, independently. nnunet (nnU-Net v2's
    `_oversample_last_XX_percent`): the samples at places >= round(B * (1 - oversampling)) of each
    batch of `batch_size` B always, the others never; at B = 2 and 0.33, the second of each pair.
    `batch_size` is one replica's batch, as in nnU-Net, where each GPU's loader draws its own.
    """
    if rule == "bernoulli":
        return oversampling
    if rule == "nnunet":
        first_forced = round(batch_size * (1 - oversampling))  # Python's rounding, as nnU-Net's
        return tf.cast(tf.cast(index, tf.int64) % batch_size >= first_forced, tf.float32)
    raise ValueError(f"config train.oversampling_rule: unknown rule {rule!r} ({', '.join(OVERSAMPLING_RULES)})")


def patch_start(shape, locations, patch_size: Sequence[int], foreground_probability: float, seed):
    """Start corner (3,) int32 of a patch in a volume of spatial `shape`.

    With `foreground_probability` (and when the case has foreground) the patch is centred on a
    foreground voxel of a random present class, shifted inside the volume; otherwise uniform.
    A probability of 1 or 0 decides it (a uniform draw in [0, 1) is always below 1, never below 0).
    `seed` is a shape-(2,) int tensor for the stateless random ops, so a patch is reproducible.
    """
    shape = tf.cast(shape, tf.int32)[:3]
    patch = tf.constant(patch_size, tf.int32)
    low, high = _start_range(shape, patch)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    uniform = tf.random.stateless_uniform([3], seeds[0], dtype=tf.float32)
    uniform_start = low + tf.minimum(tf.cast(tf.floor(uniform * tf.cast(high - low + 1, tf.float32)), tf.int32),
                                     high - low)
    want_fg = tf.random.stateless_uniform([], seeds[1]) < foreground_probability
    has_fg = tf.shape(locations)[0] > 0

    def centred():
        voxel = foreground_voxel(locations, seeds[2])
        return tf.clip_by_value(voxel - patch // 2, low, high)

    return tf.cond(tf.logical_and(want_fg, has_fg), centred, lambda: uniform_start)


def random_patch(image, seg, locations, patch_size: Sequence[int], foreground_probability: float, seed,
                 slice_axis: int | None = None):
    """A plain (unaugmented) patch of image (X, Y, Z, C) and seg (X, Y, Z), placed by `patch_start`;
    with `slice_axis`, a 2D patch of `patch_size` (in-plane) from a slice along it."""
    patch = volume_patch(patch_size, slice_axis)
    start = patch_start(tf.shape(seg), locations, patch, foreground_probability, seed)
    return drop_slice_axis(crop(image, start, patch), crop(seg, start, patch), slice_axis)
