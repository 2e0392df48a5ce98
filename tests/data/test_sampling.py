import numpy as np
import pytest
import tensorflow as tf

from unet.data.sampling import crop, foreground_probability, foreground_voxel, patch_start, random_patch
from unet.data.shards import locations_from_seg

PATCH = (16, 16, 16)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def _volume(shape, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=tuple(shape) + (channels,)).astype(np.float32)


def _no_fg():
    return np.zeros((0, 4), np.int32)


@pytest.mark.parametrize("start", [(2, 3, 1), (-3, 0, 5), (8, 9, 10), (-20, 40, 0)])
def test_crop_is_a_zero_padded_slice(start):
    image = _volume((10, 12, 14)) + 10.0
    size = (6, 5, 7)
    padded = np.pad(image, [(50, 50)] * 3 + [(0, 0)])
    want = padded[tuple(slice(s + 50, s + 50 + n) for s, n in zip(start, size))]
    np.testing.assert_array_equal(crop(image, start, size).numpy(), want)
    np.testing.assert_array_equal(crop(image[..., 0], start, size).numpy(), want[..., 0])


def test_patch_shape():
    image = _volume((30, 24, 20))
    seg = np.zeros((30, 24, 20), np.uint8)
    img_p, seg_p = random_patch(image, seg, _no_fg(), PATCH, 0.5, _seed(1))
    assert img_p.shape == PATCH + (2,) and seg_p.shape == PATCH
    assert img_p.dtype == tf.float32 and seg_p.dtype == tf.uint8


def test_volume_smaller_than_patch_is_padded_and_kept_whole():
    image = _volume((8, 10, 12)) + 5.0  # no zeros inside the volume
    seg = np.ones((8, 10, 12), np.uint8)
    img_p, seg_p = random_patch(image, seg, locations_from_seg(seg), PATCH, 1.0, _seed(2))
    img_p, seg_p = img_p.numpy(), seg_p.numpy()
    assert seg_p.sum() == seg.sum()
    np.testing.assert_array_equal(img_p[4:12, 3:13, 2:14], image)


def test_starts_stay_inside_a_larger_volume():
    shape = (40, 9, 16)
    seg = np.zeros(shape, np.uint8)
    seg[39, 8, 15] = 1
    for i in range(20):
        start = patch_start(shape, locations_from_seg(seg), PATCH, 0.5, _seed(i)).numpy()
        # axis 0 (40 > 16) inside the volume; axes 1, 2 (<= 16) centred with padding
        assert 0 <= start[0] <= 40 - 16
        assert start[1] == -(7 // 2) and start[2] == 0


def test_full_oversampling_centres_on_the_recorded_location():
    shape = (40, 40, 40)
    seg = np.zeros(shape, np.uint8)  # the seg is not consulted: only the recorded locations count
    for point in [(35, 3, 20), (0, 39, 0), (20, 20, 20)]:
        locations = np.array([[2, *point]], np.int32)
        for i in range(5):
            start = patch_start(shape, locations, PATCH, 1.0, _seed(i, 7)).numpy()
            want = np.clip(np.array(point) - 8, 0, 40 - 16)
            np.testing.assert_array_equal(start, want)


def test_oversampled_patches_hold_the_requested_class():
    shape = (48, 40, 44)
    seg = np.zeros(shape, np.uint8)
    seg[40:43, 2:4, 30:33] = 2
    seg[5, 35, 6] = 3
    image = _volume(shape)
    locations = locations_from_seg(seg)
    hits = {2: 0, 3: 0}
    for i in range(40):
        _, seg_p = random_patch(image, seg, locations, PATCH, 1.0, _seed(i, 1))
        present = set(np.unique(seg_p.numpy())) - {0}
        assert present in ({2}, {3}), present  # always on foreground, one of the two blobs
        hits[present.pop()] += 1
    # The class is drawn uniformly among present classes, not by voxel count (27 vs 1 voxels).
    assert hits[3] >= 10 and hits[2] >= 10


def test_class_is_drawn_uniformly_among_present_classes():
    rows = np.concatenate([np.column_stack([np.full(9990, 1), np.zeros((9990, 3))]),
                           np.column_stack([np.full(10, 4), np.ones((10, 3))])]).astype(np.int32)
    picked = tf.function(lambda s: foreground_voxel(tf.constant(rows), s))
    classes = [4 if picked(_seed(i, 3)).numpy()[0] == 1 else 1 for i in range(300)]
    share = classes.count(4) / len(classes)
    assert 0.4 < share < 0.6


def test_zero_oversampling_samples_uniformly():
    shape = (40, 40, 40)
    locations = np.array([[1, 35, 3, 20]], np.int32)
    starts = [tuple(patch_start(shape, locations, PATCH, 0.0, _seed(i)).numpy()) for i in range(20)]
    assert len(set(starts)) > 10
    assert starts.count((24, 0, 12)) <= 1  # the start centred on the foreground voxel: not favoured


def test_no_foreground_falls_back_to_a_uniform_patch():
    image = _volume((30, 30, 30))
    seg = np.zeros((30, 30, 30), np.uint8)
    img_p, seg_p = random_patch(image, seg, _no_fg(), PATCH, 1.0, _seed(3))
    assert seg_p.shape == PATCH and seg_p.numpy().max() == 0 and img_p.shape == PATCH + (2,)


def test_image_and_seg_patches_come_from_the_same_place():
    shape = (30, 26, 22)
    seg = np.random.default_rng(1).integers(0, 3, size=shape).astype(np.uint8)
    image = np.stack([seg.astype(np.float32), -seg.astype(np.float32)], axis=-1)
    for i in range(5):
        img_p, seg_p = random_patch(image, seg, locations_from_seg(seg), PATCH, 0.5, _seed(i))
        np.testing.assert_array_equal(img_p.numpy()[..., 0], seg_p.numpy())


def test_same_seed_same_patch_and_seeds_vary():
    shape = (40, 36, 32)
    image = _volume(shape)
    seg = (np.random.default_rng(2).random(shape) > 0.99).astype(np.uint8)
    locations = locations_from_seg(seg)
    first = random_patch(image, seg, locations, PATCH, 0.5, _seed(11, 3))
    again = random_patch(image, seg, locations, PATCH, 0.5, _seed(11, 3))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    others = [random_patch(image, seg, locations, PATCH, 0.5, _seed(11, j))[0].numpy() for j in range(4, 8)]
    assert any(not np.array_equal(first[0].numpy(), o) for o in others)


@pytest.mark.parametrize("batch, oversampling, forced", [(2, 0.33, [1]), (2, 0.5, [1]), (2, 0.0, []),
                                                          (4, 0.33, [3]), (4, 0.5, [2, 3]), (3, 1.0, [0, 1, 2])])
def test_nnunet_rule_forces_the_last_places_of_each_batch(batch, oversampling, forced):
    """nnU-Net v2: place j of a batch of B is forced when j >= round(B * (1 - oversampling))."""
    probabilities = [float(foreground_probability("nnunet", oversampling, index, batch)) for index in range(3 * batch)]
    assert probabilities == [1.0 if index % batch in forced else 0.0 for index in range(3 * batch)]


def test_bernoulli_rule_gives_every_patch_the_same_probability():
    assert foreground_probability("bernoulli", 0.33, 5, 2) == 0.33
    with pytest.raises(ValueError, match="train.oversampling_rule"):
        foreground_probability("sometimes", 0.33, 0, 2)


def test_a_probability_of_one_or_zero_decides_the_patch():
    fg = np.array([[1, 0, 0, 0]], np.int32)  # one foreground voxel in the corner of a 40^3 volume
    for i in range(50):
        always = patch_start((40, 40, 40), fg, (8, 8, 8), tf.constant(1.0), _seed(i)).numpy()
        never = patch_start((40, 40, 40), fg, (8, 8, 8), tf.constant(0.0), _seed(i)).numpy()
        assert always.tolist() == [0, 0, 0]
        assert never.tolist() != [0, 0, 0]


# -- 2D patches: slices along the plan's slice axis ------------------------------------------

def _coordinates(shape):
    """An image whose channel a is the voxel's coordinate along axis a, plus 1 (0 is padding)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) + 1 for n in shape], indexing="ij")
    return np.stack(grids, axis=-1)


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_a_2d_patch_is_a_crop_of_one_slice_along_the_slice_axis(slice_axis):
    shape = (20, 24, 18)
    image, seg = _coordinates(shape), np.zeros(shape, np.uint8)
    plane = [a for a in range(3) if a != slice_axis]
    slices = set()
    for i in range(30):
        img, seg_patch = random_patch(image, seg, _no_fg(), (8, 6), 0.0, _seed(i), slice_axis=slice_axis)
        img = img.numpy()
        assert img.shape == (8, 6, 3) and seg_patch.shape == (8, 6)
        along = img[..., slice_axis]
        assert np.all(along == along[0, 0])  # one slice
        slices.add(float(along[0, 0]))
        # The in-plane axes, in order, run along the patch's two axes, a voxel per step.
        first, second = img[..., plane[0]], img[..., plane[1]]
        np.testing.assert_array_equal(np.diff(first, axis=0), 1.0)
        np.testing.assert_array_equal(np.diff(first, axis=1), 0.0)
        np.testing.assert_array_equal(np.diff(second, axis=1), 1.0)
        np.testing.assert_array_equal(np.diff(second, axis=0), 0.0)
    assert len(slices) > 8  # uniform slices, not always the same one


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_a_2d_patch_centred_on_foreground_takes_the_location_s_slice(slice_axis):
    shape = (20, 24, 18)
    image, seg = _coordinates(shape), np.zeros(shape, np.uint8)
    voxel = (13, 5, 11)
    seg[voxel] = 1
    locations = locations_from_seg(seg)
    plane = [a for a in range(3) if a != slice_axis]
    for i in range(5):
        img, seg_patch = random_patch(image, seg, locations, (8, 8), 1.0, _seed(i), slice_axis=slice_axis)
        img, seg_patch = img.numpy(), seg_patch.numpy()
        assert np.all(img[..., slice_axis] == voxel[slice_axis] + 1)
        assert seg_patch.sum() == 1
        where = tuple(int(w[0]) for w in np.nonzero(seg_patch))
        assert tuple(img[where][plane] - 1) == tuple(voxel[a] for a in plane)  # the voxel itself


def test_volume_patch_inserts_the_slice_axis():
    from unet.data.sampling import volume_patch

    assert volume_patch((32, 16), 0) == (1, 32, 16)
    assert volume_patch((32, 16), 2) == (32, 16, 1)
    assert volume_patch((8, 8, 8), None) == (8, 8, 8)
    with pytest.raises(ValueError):
        volume_patch((8, 8, 8), 1)
