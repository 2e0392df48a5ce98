import numpy as np
import pytest

from unet.data.pipeline import training_dataset, validation_patches
from unet.data.shards import write_shards
from unet.io.atomic import save_npy

PATCH = (8, 8, 8)
# Each case's image is constant (its value) inside the volume, so a patch tells where it came from.
CASES = {"a": ((12, 10, 9), 1.0), "b": ((9, 14, 11), 2.0), "c": ((10, 10, 10), 3.0)}


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    for cid, (shape, value) in CASES.items():
        save_npy(root / "pre" / f"{cid}.npy", np.full(shape + (2,), value, np.float32))
        seg = np.zeros(shape, np.uint8)
        seg[tuple(rng.integers(0, n) for n in shape)] = 1
        save_npy(root / "pre" / f"{cid}_seg.npy", seg)
    write_shards(root / "pre", list(CASES), root / "shards")
    return root / "shards"


def _take(dataset, n):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_training_batches(shard_dir):
    ds = training_dataset(shard_dir, ["a", "b"], PATCH, batch_size=3, oversampling=0.5, seed=0, augment=False)
    batches = _take(ds, 4)  # endless: more patches than the two cases hold
    assert len(batches) == 4
    for image, seg in batches:
        assert image.shape == (3, *PATCH, 2) and image.dtype == np.float32
        assert seg.shape == (3, *PATCH) and seg.dtype == np.uint8
        # Only the listed cases are sampled ("c" has value 3); 0 is padding.
        assert set(np.unique(image)) <= {0.0, 1.0, 2.0}
    values = set(np.unique(np.concatenate([b[0] for b in batches])))
    assert {1.0, 2.0} <= values


def test_augmented_batches_keep_shape_and_foreground(shard_dir):
    ds = training_dataset(shard_dir, ["a", "b", "c"], PATCH, batch_size=4, oversampling=1.0, seed=3,
                          augment=True, elastic=True, threads=1)
    images = []
    for image, seg in _take(ds, 3):
        assert image.shape == (4, *PATCH, 2) and image.dtype == np.float32
        assert seg.shape == (4, *PATCH) and seg.dtype == np.uint8
        assert np.isfinite(image).all()
        # Every patch is centred on the single foreground voxel: only a rotation or scaling can
        # lose it (nearest neighbour may skip one voxel), so most patches hold it.
        assert (seg.reshape(4, -1).max(axis=1) == 1).sum() >= 2
        images.append(image)
    values = np.unique(np.concatenate(images))
    assert len(values) > 10  # intensities augmented, not the constants 0-3


def test_training_batches_are_reproducible(shard_dir):
    kwargs = dict(patch_size=PATCH, batch_size=2, oversampling=0.33, seed=5, augment=True)
    first = _take(training_dataset(shard_dir, ["a", "b", "c"], **kwargs), 3)
    second = _take(training_dataset(shard_dir, ["a", "b", "c"], **kwargs), 3)
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("n", [1, 5])
def test_validation_patches(shard_dir, n):
    images, segs = validation_patches(shard_dir, ["b", "c"], PATCH, n, seed=0)
    assert images.shape == (n, *PATCH, 2) and images.dtype == np.float32
    assert segs.shape == (n, *PATCH) and segs.dtype == np.uint8
    assert set(np.unique(images)) <= {0.0, 2.0, 3.0}
    again = validation_patches(shard_dir, ["b", "c"], PATCH, n, seed=0)
    np.testing.assert_array_equal(images, again[0])


def test_one_pipeline_serves_every_epoch_as_a_pipeline_per_epoch_would(shard_dir):
    """training_epochs (built and traced once per run) draws, epoch by epoch, what training_dataset
    draws with that epoch's seed: an epoch's patches depend on its seed alone, so a resumed run
    sees the same patches. It works whatever TensorFlow's global seed was (0 included)."""
    import keras

    from unet.data.pipeline import training_epochs

    keras.utils.set_random_seed(0)
    kwargs = dict(batch_size=2, oversampling=0.5, augment=True)
    run = _take(training_epochs(shard_dir, ["a", "b", "c"], PATCH, epoch_seeds=[5, 9], steps_per_epoch=3,
                                **kwargs), 10)
    assert len(run) == 6  # exactly steps_per_epoch batches per epoch, then the end
    resumed = _take(training_epochs(shard_dir, ["a", "b", "c"], PATCH, epoch_seeds=[9], steps_per_epoch=3,
                                    **kwargs), 10)
    for i, seed in enumerate([5, 9]):
        alone = _take(training_dataset(shard_dir, ["a", "b", "c"], PATCH, seed=seed, **kwargs), 3)
        for (image, seg), (image_alone, seg_alone) in zip(run[3 * i:3 * i + 3], alone):
            np.testing.assert_array_equal(image, image_alone)
            np.testing.assert_array_equal(seg, seg_alone)
    for (image, seg), (image_resumed, seg_resumed) in zip(run[3:], resumed):
        np.testing.assert_array_equal(image, image_resumed)
        np.testing.assert_array_equal(seg, seg_resumed)
    assert not np.array_equal(run[0][0], run[3][0])


def test_mask_channels_are_zero_again_where_augmentation_reads_outside_the_case(shard_dir):
    kwargs = dict(patch_size=PATCH, batch_size=4, oversampling=0.0, seed=7, augment=True, threads=1)
    plain = _take(training_dataset(shard_dir, ["a", "b", "c"], **kwargs), 3)
    masked = _take(training_dataset(shard_dir, ["a", "b", "c"], mask_channels=(1,), **kwargs), 3)
    zeroed = 0
    for (image, seg), (masked_image, masked_seg) in zip(plain, masked):
        np.testing.assert_array_equal(masked_seg, seg)
        np.testing.assert_array_equal(masked_image[..., 0], image[..., 0])  # not a mask channel
        differs = masked_image[..., 1] != image[..., 1]
        assert np.all(masked_image[..., 1][differs] == 0.0)
        zeroed += int(differs.sum())
    assert zeroed > 0  # rotated or scaled patches did read beyond the cases
