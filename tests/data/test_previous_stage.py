"""A cascade's previous stage channels in augmentation (unet.data.previous_stage and
augmentation's `previous_channels`): moved like the image and one-hot again, untouched by the
intensity transforms and the mask, perturbed as nnU-Net does; checked against scipy."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from unet.data.augmentation import AugmentSettings, augmented_patch
from unet.data.previous_stage import (as_one_hot, connected_components, dilate, erode, random_morphology,
                                      remove_random_component)
from unet.data.sampling import crop

PATCH = (16, 16, 16)
CROSS, CUBE = ndimage.generate_binary_structure(3, 1), np.ones((3, 3, 3), bool)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _blobs(shape=(24, 24, 24), seed=0, level=0.3):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 1.5) > level * 0.1


def _one_hot(indices, num_classes):
    return np.eye(num_classes, dtype=np.float32)[indices][..., 1:]


def _cascade_case(shape=(28, 30, 26)):
    """Image: noise in channel 0 and a blob-shaped intensity in channel 1 (0 outside the blob, the
    non-zero mask); the previous stage: 3 classes, blobs, one-hot of 1 and 2 in channels 2, 3."""
    rng = np.random.default_rng(4)
    indices = np.where(_blobs(shape, 1), 1, 0) + np.where(_blobs(shape, 2, 1.5), 1, 0)
    image = np.stack([rng.normal(size=shape), np.where(_blobs(shape, 3, -1.0), 1.0 + rng.random(shape), 0.0)], -1)
    return np.concatenate([image, _one_hot(indices, 3)], -1).astype(np.float32), indices.astype(np.uint8)


def test_connected_components_are_scipy_s_26_connected_ones():
    mask = _blobs()
    labels, n = ndimage.label(mask, structure=CUBE)
    ids = connected_components(tf.constant(mask), (0, 1, 2)).numpy()
    assert n > 5 and np.all(ids[~mask] == 0) and np.all(ids[mask] > 0)
    assert len(set(zip(labels[mask].tolist(), ids[mask].tolist()))) == n == len(np.unique(ids[mask]))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_dilation_and_erosion_alternate_cross_and_cube_steps(radius):
    mask = _blobs(seed=5)
    want = mask
    for step in range(radius):
        want = ndimage.binary_dilation(want, CROSS if step % 2 == 0 else CUBE)
    got = dilate(tf.constant(mask, tf.float32), tf.constant(radius), (0, 1, 2)).numpy()
    np.testing.assert_array_equal(got > 0, want)
    want = mask
    for step in range(radius):  # nothing is eroded from the patch's border
        want = ndimage.binary_erosion(want, CROSS if step % 2 == 0 else CUBE, border_value=1)
    np.testing.assert_array_equal(erode(tf.constant(mask, tf.float32), tf.constant(radius), (0, 1, 2)).numpy() > 0,
                                  want)


def test_a_thin_axis_is_left_out_of_the_structuring_element():
    mask = _blobs((24, 1, 24), seed=6)
    eroded = erode(tf.constant(mask, tf.float32), 1, (0, 2)).numpy() > 0
    cross = ndimage.generate_binary_structure(2, 1)
    np.testing.assert_array_equal(eroded[:, 0], ndimage.binary_erosion(mask[:, 0], cross, border_value=1))


def test_as_one_hot_is_the_argmax_with_the_background():
    channels = tf.constant([[0.2, 0.3], [0.6, 0.1], [0.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(as_one_hot(channels).numpy(), [[0, 0], [1, 0], [0, 0], [1, 0], [1, 0]])


def test_random_morphology_changes_each_channel_and_keeps_them_exclusive():
    image, indices = _cascade_case()
    previous = image[..., 2:]
    changed = 0
    for i in range(8):
        out = random_morphology(tf.constant(previous), _seed(i), (1, 3), (0, 1, 2)).numpy()
        assert set(np.unique(out)) <= {0.0, 1.0} and out.sum(-1).max() <= 1.0  # still one class per voxel
        for c in range(2):
            mask = previous[..., c] > 0
            got = out[..., c] > 0
            # One of dilation, erosion, opening, closing: got grows or shrinks the channel (then a
            # later channel's dilation may clear some of it).
            changed += not np.array_equal(got, mask)
    assert changed >= 12


def test_the_removed_component_is_a_small_one_and_one_per_channel():
    indices = np.zeros((20, 20, 20), np.uint8)
    indices[1:15, 1:15, 1:15] = 1          # 2744 voxels, over 15 % of the patch: kept
    indices[17:19, 17:19, 17:19] = 1       # small components of class 1
    indices[17, 1, 1] = 1
    indices[1:3, 17:19, 1:3] = 2           # class 2: one small component
    previous = tf.constant(_one_hot(indices, 3))
    seen = set()
    for i in range(12):
        out = remove_random_component(previous, _seed(i), 0.15, (0, 1, 2)).numpy()
        removed = (previous.numpy() > 0) & (out == 0)
        assert np.all(out <= previous.numpy())
        assert removed[1:15, 1:15, 1:15, 0].sum() == 0
        assert removed[..., 0].sum() in (8, 1) and removed[..., 1].sum() == 8  # one component each
        seen.add(int(removed[..., 0].sum()))
    assert seen == {8, 1}  # drawn among the small ones
    empty = tf.zeros((6, 6, 6, 2))
    np.testing.assert_array_equal(remove_random_component(empty, _seed(0), 0.15, (0, 1, 2)).numpy(), 0)


def _cascade(**probabilities):
    return dataclasses.replace(AugmentSettings.off(), previous_channels=2, **probabilities)


def test_intensity_transforms_and_the_mask_leave_the_previous_stage_alone():
    image, _ = _cascade_case()
    seg = np.zeros(image.shape[:3], np.uint8)  # the mask marks background only (nnU-Net's)
    start = tf.constant([5, 6, 4])
    settings = _cascade(p_noise=1.0, p_blur=1.0, p_brightness=1.0, p_contrast=1.0, p_low_resolution=1.0,
                        p_gamma_inverted=1.0, p_gamma=1.0, blur_per_channel=1.0, low_resolution_per_channel=1.0,
                        mask_channels=(1,))
    out = augmented_patch(image, seg, start, PATCH, settings, _seed(3))[0].numpy()
    cut = crop(image, start, PATCH).numpy()
    np.testing.assert_array_equal(out[..., 2:], cut[..., 2:])
    outside = cut[..., 1] == 0
    assert outside.mean() > 0.05 and np.all(out[..., 1][outside] == 0)  # the mask channel is masked
    assert np.any(cut[..., 2:][outside] == 1)  # ... and the previous stage there is kept
    assert not np.allclose(out[..., 0], cut[..., 0])  # the image channels were transformed


def test_spatial_transforms_move_the_previous_stage_with_the_seg_and_keep_it_one_hot():
    image, indices = _cascade_case()
    settings = _cascade(p_rotation=1.0, p_scaling=1.0, p_mirror=0.5)
    for i in range(4):
        out, seg = (t.numpy() for t in augmented_patch(image, indices, tf.constant([5, 6, 4]), PATCH, settings,
                                                       _seed(i, 1)))
        previous = out[..., 2:]
        assert set(np.unique(previous)) <= {0.0, 1.0} and previous.sum(-1).max() <= 1.0
        # The seg is read by nearest neighbour, the previous stage by linear interpolation and argmax:
        # they differ at a few border voxels only.
        assert np.mean(np.argmax(np.concatenate([1 - previous.sum(-1, keepdims=True), previous], -1), -1) == seg) > 0.9


def test_the_perturbations_fire_with_their_probabilities():
    image, indices = _cascade_case()
    start = tf.constant([5, 6, 4])
    run = tf.function(lambda s, settings: augmented_patch(image, indices, start, PATCH, settings, s)[0])
    plain = crop(image, tf.constant([5, 6, 4]), PATCH).numpy()[..., 2:]
    nnunet = AugmentSettings.nnunet(PATCH, previous_channels=2)
    assert (nnunet.p_previous_morphology, nnunet.p_previous_removal) == (0.4, 0.2)
    settings = _cascade(p_previous_morphology=0.4)
    fired = sum(not np.array_equal(run(_seed(i, 7), settings).numpy()[..., 2:], plain) for i in range(40))
    assert 6 <= fired <= 26
    off = AugmentSettings.off()
    assert off.p_previous_morphology == off.p_previous_removal == 0.0
