"""Random patches with foreground oversampling, and mirroring: tf ops, run inside tf.data."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def _pad_to(image, seg, patch_size):
    shape = tf.shape(seg)
    pad = tf.maximum(tf.constant(patch_size) - shape, 0)
    before = pad // 2
    paddings = tf.stack([before, pad - before], axis=1)
    image = tf.pad(image, tf.concat([paddings, [[0, 0]]], axis=0))
    return image, tf.pad(seg, paddings)


def random_patch(image, seg, patch_size: Sequence[int], foreground_probability: float, seed):
    """Crop one patch; with `foreground_probability` it is centred on a random foreground voxel.

    `seed` is a shape-(2,) int tensor for the stateless random ops, so a patch is reproducible.
    """
    image, seg = _pad_to(image, seg, patch_size)
    patch = tf.constant(patch_size)
    shape = tf.shape(seg)
    room = shape - patch  # >= 0 after padding
    seeds = tf.random.experimental.stateless_split(seed, 3)
    uniform_start = tf.cast(tf.floor(tf.random.stateless_uniform([3], seeds[0]) *
                                     tf.cast(room + 1, tf.float32)), tf.int32)
    foreground = tf.where(seg > 0)
    want_fg = tf.random.stateless_uniform([], seeds[1]) < foreground_probability
    has_fg = tf.shape(foreground)[0] > 0

    def centred_start():
        pick = tf.random.stateless_uniform([], seeds[2], 0, tf.shape(foreground)[0], dtype=tf.int32)
        centre = tf.cast(foreground[pick], tf.int32)
        return tf.clip_by_value(centre - patch // 2, 0, room)

    start = tf.cond(tf.logical_and(want_fg, has_fg), centred_start, lambda: uniform_start)
    image_patch = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([patch, [-1]], 0))
    seg_patch = tf.slice(seg, start, patch)
    return image_patch, seg_patch


def random_mirror(image, seg, seed, probability: float = 0.5):
    """Flip each spatial axis independently with `probability`."""
    flips = tf.random.stateless_uniform([3], seed) < probability
    for axis in range(3):
        image, seg = tf.cond(flips[axis],
                             lambda i=image, s=seg, a=axis: (tf.reverse(i, [a]), tf.reverse(s, [a])),
                             lambda i=image, s=seg: (i, s))
    return image, seg
