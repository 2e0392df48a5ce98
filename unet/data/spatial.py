"""Spatial augmentation: a patch sampled through a rotated, scaled (optionally deformed) grid.

Pure TensorFlow functions on one case (image (X, Y, Z, C), seg (X, Y, Z)); 3D only. The patch's
voxel j is taken from the case at `centre + A @ (j - (patch - 1) / 2) + displacement(j)`, A a
rotation times a scaling as in batchgeneratorsv2's SpatialTransform (A = Rz Ry Rx S; a scale
above 1 samples a larger region, so structures look smaller). The image is read with trilinear
interpolation and the seg with nearest neighbour, by gathering from the flattened case (no
region is cut out first, no loop over voxels). Points outside the case read 0 in both. nnU-Net
reads the seg by interpolating each label's indicator linearly and taking the argmax; nearest
neighbour is cheaper and differs only by a voxel at some borders.

With `mask_channels` (those normalized inside the non-zero mask) the seg comes back int32, -1
where the nearest voxel is background outside that mask (0 in those channels) or outside the
case: nnU-Net's marker of where the image is set to 0 again after augmentation (`zero_outside`).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def rotation_matrix(angles, scales):
    """Rz @ Ry @ Rx @ diag(scales) for angles (3,) about axes 0, 1, 2 (radians) and scales (3,)."""
    angles = tf.cast(angles, tf.float32)
    c, s = tf.cos(angles), tf.sin(angles)
    one, zero = tf.ones([], tf.float32), tf.zeros([], tf.float32)
    rx = tf.stack([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
    ry = tf.stack([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
    rz = tf.stack([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
    return rz @ ry @ rx @ tf.linalg.diag(tf.cast(scales, tf.float32))


def _interpolation_matrix(n_out: int, n_in):
    """(n_out, n_in) linear interpolation weights from n_in control points spanning n_out voxels."""
    pos = tf.linspace(0.0, tf.cast(n_in - 1, tf.float32), n_out)
    i0 = tf.minimum(tf.cast(tf.floor(pos), tf.int32), n_in - 2)
    w = pos - tf.cast(i0, tf.float32)
    return (tf.one_hot(i0, n_in) * (1 - w)[:, None]) + (tf.one_hot(i0 + 1, n_in) * w[:, None])


def elastic_displacement(patch_size: Sequence[int], spacing, magnitude, seed, axes: Sequence[int] = (0, 1, 2)):
    """A smooth random displacement field (X, Y, Z, 3) in voxels, max |component| = `magnitude`.

    Gaussian noise on a coarse grid of control points `spacing` voxels apart (at least 3 per
    axis), trilinearly upsampled: smooth like batchgeneratorsv2's blurred noise, at the cost of
    three small matrix products instead of a 3D blur. Only `axes` move, and the field varies
    only along them: with two axes, every slice across the third is deformed alike (2D).
    """
    full = [int(p) for p in patch_size]
    varying = [p if a in axes else 1 for a, p in enumerate(full)]
    spacing = tf.maximum(tf.cast(spacing, tf.float32), 1.0)
    counts = [tf.maximum(tf.cast(tf.math.ceil(p / spacing), tf.int32) + 1, 3) for p in varying]
    noise = tf.random.stateless_normal(tf.stack([counts[0], counts[1], counts[2], 3]), seed)
    noise = noise * tf.constant([1.0 if a in axes else 0.0 for a in range(3)])
    mx, my, mz = (_interpolation_matrix(p, n) for p, n in zip(varying, counts))
    field = tf.einsum("zk,ijkc->ijzc", mz, noise)
    field = tf.einsum("yj,ijzc->iyzc", my, field)
    field = tf.einsum("xi,iyzc->xyzc", mx, field)
    peak = tf.reduce_max(tf.abs(field), axis=[0, 1, 2])
    field = field * (tf.cast(magnitude, tf.float32) / tf.maximum(peak, 1e-6))
    return tf.broadcast_to(field, full + [3])


def _sample_points(patch: list[int], centre, matrix, first_plane=0, planes=None):
    """Case coordinates (3 arrays of shape (planes, Y, Z)) of the patch voxels in x-planes
    [first_plane, first_plane + planes): centre + matrix @ offset.

    The map is affine, so each coordinate is a sum of three 1-D ramps broadcast together; no
    (M, 3) grid is built or multiplied.
    """
    planes = patch[0] if planes is None else planes
    ramps = [tf.range(p, dtype=tf.float32) - (p - 1) / 2 for p in patch]
    ramp_x = tf.cast(first_plane, tf.float32) + tf.range(planes, dtype=tf.float32) - (patch[0] - 1) / 2
    shaped = [tf.reshape(ramp_x, [-1, 1, 1]), tf.reshape(ramps[1], [1, -1, 1]), tf.reshape(ramps[2], [1, 1, -1])]
    return [centre[a] + matrix[a, 0] * shaped[0] + matrix[a, 1] * shaped[1] + matrix[a, 2] * shaped[2]
            for a in range(3)]


def outside_mask(image_values, seg_values, mask_channels: Sequence[int]):
    """Where a voxel is background outside the non-zero mask: 0 in every mask channel of the
    image (..., C) and 0 in the seg (as nnU-Net marks -1 only where the seg is 0)."""
    values = tf.gather(image_values, list(mask_channels), axis=-1)
    return tf.reduce_all(tf.equal(values, 0.0), axis=-1) & tf.equal(seg_values, 0)


def mark_outside(image, seg, mask_channels: Sequence[int]):
    """The seg as int32 with -1 where `outside_mask`; unchanged without `mask_channels`."""
    if not mask_channels:
        return seg
    return tf.where(outside_mask(image, seg, mask_channels), -1, tf.cast(seg, tf.int32))


def zero_outside(image, marked_seg, mask_channels: Sequence[int], seg_dtype):
    """nnU-Net's MaskImageTransform and RemoveLabelTransform(-1, 0): the mask channels 0 where
    the seg is marked -1, and the marker back to background (as `seg_dtype`)."""
    channels = tf.reduce_any(tf.equal(tf.range(tf.shape(image)[-1])[:, None], list(mask_channels)), axis=1)
    image = tf.where((marked_seg < 0)[..., None] & channels, 0.0, image)
    return image, tf.cast(tf.maximum(marked_seg, 0), seg_dtype)


def _read(flat_image, flat_seg, coords, shape, mask_channels: Sequence[int] = ()):
    """Trilinear image and nearest seg at `coords` (3 flat arrays, already clamped into the
    volume `shape`, whose outer layer is zero) from the flattened volume; with `mask_channels`,
    the seg marked -1 outside the mask of the nearest voxel (`mark_outside`)."""
    floors = [tf.minimum(tf.floor(c), tf.cast(shape[a] - 2, tf.float32)) for a, c in enumerate(coords)]
    fx, fy, fz = (c - f for c, f in zip(coords, floors))
    x, y, z = (tf.cast(f, tf.int32) for f in floors)
    base = (x * shape[1] + y) * shape[2] + z
    plane, row = shape[1] * shape[2], shape[2]
    out = None
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            wxy = wx * wy
            for dz, wz in ((0, 1 - fz), (1, fz)):
                term = tf.gather(flat_image, base + (dx * plane + dy * row + dz)) * (wxy * wz)[:, None]
                out = term if out is None else out + term
    nearest = [tf.cast(tf.floor(c + 0.5), tf.int32) for c in coords]
    nearest = (nearest[0] * shape[1] + nearest[1]) * shape[2] + nearest[2]
    seg_out = tf.gather(flat_seg, nearest)
    if mask_channels:
        seg_out = mark_outside(tf.gather(flat_image, nearest), seg_out, mask_channels)
    return out, seg_out


SLAB_VOXELS = 2**16  # points read per step: the step's temporaries stay in the CPU cache


def sample_through_grid(image, seg, start, patch_size: Sequence[int], matrix, displacement=None,
                        border: int = 0, mask_channels: Sequence[int] = ()):
    """The patch whose unaugmented position starts at `start`, read through `matrix` (3, 3).

    `displacement` (X, Y, Z, 3) voxels, optional, is added to the rotated points (in case voxels,
    not scaled). `border`: the case already carries that many layers of zeros around it (the
    training pipeline adds one when it caches a case); `start` is in the coordinates without
    them. With none, one is added here, at the cost of a copy of the case. Points are clamped
    into the bordered case, so whatever lies outside reads the zero layer: no masks.
    Reads the case directly (flattened, gathered), slab by slab of x-planes, so that the dozens
    of elementwise steps per point run on cache-sized arrays rather than streaming the whole
    patch through memory each time. Returns image (patch, C) float32, seg (patch).
    """
    if border < 1:
        image = tf.pad(image, [[1, 1], [1, 1], [1, 1], [0, 0]])
        seg = tf.pad(seg, [[1, 1], [1, 1], [1, 1]])
        border = 1
    patch = [int(p) for p in patch_size]
    matrix = tf.cast(matrix, tf.float32)
    centre = tf.cast(start, tf.float32) + tf.constant([border + (p - 1) / 2 for p in patch], tf.float32)
    shape = tf.shape(seg)
    high = tf.cast(shape - 1, tf.float32)
    channels = tf.shape(image)[-1]
    flat_image, flat_seg = tf.reshape(image, [-1, channels]), tf.reshape(seg, [-1])
    planes = max(1, min(patch[0], SLAB_VOXELS // (patch[1] * patch[2])))
    while patch[0] % planes:
        planes -= 1

    def slab(first):
        coords = _sample_points(patch, centre, matrix, first, planes)
        if displacement is not None:
            part = displacement[first:first + planes]
            coords = [c + part[..., a] for a, c in enumerate(coords)]
        coords = [tf.clip_by_value(tf.reshape(c, [-1]), 0.0, high[a]) for a, c in enumerate(coords)]
        return _read(flat_image, flat_seg, coords, shape, mask_channels)

    seg_dtype = tf.int32 if mask_channels else seg.dtype
    out, seg_out = tf.map_fn(slab, tf.range(0, patch[0], planes),
                             fn_output_signature=(tf.float32, seg_dtype), parallel_iterations=1)
    return (tf.reshape(out, tf.concat([patch, [channels]], 0)),
            tf.reshape(seg_out, patch))
