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


@pytest.fixture(scope="module")
def corner_shards(tmp_path_factory):
    """Three 40^3 cases whose one foreground voxel is the corner (0, 0, 0): an 8^3 patch holds it
    when it was centred on foreground, and a uniform one almost never ((1/33)^3)."""
    root = tmp_path_factory.mktemp("corner")
    for value, cid in enumerate(("p", "q", "r"), start=1):
        save_npy(root / "pre" / f"{cid}.npy", np.full((40, 40, 40, 1), value, np.float32))
        seg = np.zeros((40, 40, 40), np.uint8)
        seg[0, 0, 0] = 1
        save_npy(root / "pre" / f"{cid}_seg.npy", seg)
    write_shards(root / "pre", ["p", "q", "r"], root / "shards")
    return root / "shards"


def _foreground_per_place(shard_dir, batches=40, **kwargs):
    """(batches, B) bools: which patches hold foreground."""
    from unet.data.pipeline import training_epochs

    dataset = training_epochs(shard_dir, ["p", "q", "r"], PATCH, oversampling=0.33, epoch_seeds=[3, 4],
                              steps_per_epoch=batches // 2, augment=False, **kwargs)
    return np.stack([seg.reshape(len(seg), -1).max(axis=1) == 1 for _, seg in _take(dataset, batches)])


def test_nnunet_oversampling_forces_exactly_one_patch_of_each_pair(corner_shards):
    counts = _foreground_per_place(corner_shards, batch_size=2, oversampling_rule="nnunet")
    assert counts.shape == (40, 2)
    assert counts[:, 1].all() and not counts[:, 0].any()  # the second of each pair, every time


def test_nnunet_oversampling_counts_per_replica_batch(corner_shards):
    # A global batch of 4 made of two replicas' batches of 2: each replica's second patch is forced.
    counts = _foreground_per_place(corner_shards, batch_size=4, oversampling_rule="nnunet", replica_batch_size=2)
    np.testing.assert_array_equal(counts, np.tile([False, True, False, True], (40, 1)))
    alone = _foreground_per_place(corner_shards, batch_size=4, oversampling_rule="nnunet")
    np.testing.assert_array_equal(alone, np.tile([False, False, False, True], (40, 1)))  # round(4 * 0.67) = 3


def test_bernoulli_oversampling_counts_vary_per_batch(corner_shards):
    counts = _foreground_per_place(corner_shards, batch_size=2, oversampling_rule="bernoulli").sum(axis=1)
    assert set(counts.tolist()) == {0, 1, 2}
    assert 0.15 < counts.mean() / 2 < 0.5  # about a third of the patches


@pytest.mark.parametrize("patches_per_case", [4, 1])
def test_case_sampling(shard_dir, patches_per_case):
    """4 patches per case: a batch of 2 comes from one case. 1: each patch draws its case, so a
    batch's two patches come from different cases at least as often as independent draws
    from 3 cases would (2/3 of the batches); every case is drawn."""
    from unet.data.pipeline import training_epochs

    dataset = training_epochs(shard_dir, ["a", "b", "c"], PATCH, 2, oversampling=0.33, epoch_seeds=[1, 2, 3],
                              steps_per_epoch=20, augment=False, patches_per_case=patches_per_case)
    cases = np.stack([image.reshape(2, -1).max(axis=1) for image, _ in _take(dataset, 60)])  # the case's value
    mixed = (cases[:, 0] != cases[:, 1]).mean()
    if patches_per_case == 4:
        assert mixed == 0.0
    else:
        assert mixed >= 2 / 3
        assert set(np.unique(cases)) == {1.0, 2.0, 3.0}


# -- 2D patches (a 2d plan's) from the same 3D shards --------------------------------------------

@pytest.fixture(scope="module")
def coordinate_shards(tmp_path_factory):
    """Three cases whose channels 0-2 are each voxel's x, y, z (plus 1) and channel 3 the case's
    number, with one foreground voxel each."""
    root = tmp_path_factory.mktemp("coordinates")
    for number, (cid, shape) in enumerate({"u": (20, 14, 12), "v": (12, 18, 16), "w": (16, 16, 10)}.items(), 1):
        grids = np.meshgrid(*[np.arange(n, dtype=np.float32) + 1 for n in shape], indexing="ij")
        save_npy(root / "pre" / f"{cid}.npy", np.stack([*grids, np.full(shape, number, np.float32)], axis=-1))
        seg = np.zeros(shape, np.uint8)
        seg[3, 4, 5] = 1
        save_npy(root / "pre" / f"{cid}_seg.npy", seg)
    write_shards(root / "pre", ["u", "v", "w"], root / "shards")
    return root / "shards"


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_2d_batches_are_slices_along_the_plan_s_slice_axis(coordinate_shards, slice_axis):
    plane = [a for a in range(3) if a != slice_axis]
    ds = training_dataset(coordinate_shards, ["u", "v", "w"], (8, 6), batch_size=6, oversampling=0.5, seed=1,
                          augment=False, slice_axis=slice_axis)
    for image, seg in _take(ds, 4):
        assert image.shape == (6, 8, 6, 4) and seg.shape == (6, 8, 6)
        for patch in image:
            assert np.all(patch[..., slice_axis] == patch[0, 0, slice_axis])
            np.testing.assert_array_equal(np.diff(patch[..., plane[0]], axis=0), 1.0)
            np.testing.assert_array_equal(np.diff(patch[..., plane[1]], axis=1), 1.0)
    # Oversampled patches hold the foreground voxel, in its slice.
    ds = training_dataset(coordinate_shards, ["u", "v", "w"], (8, 6), batch_size=4, oversampling=1.0, seed=2,
                          augment=False, slice_axis=slice_axis)
    for image, seg in _take(ds, 2):
        assert np.all(seg.reshape(4, -1).sum(axis=1) == 1)
        assert np.all(image[..., slice_axis] == (3, 4, 5)[slice_axis] + 1)


@pytest.mark.parametrize("per_case", [1, 2])
def test_a_2d_batch_draws_its_slices_from_several_cases(coordinate_shards, per_case):
    """NVIDIA's --nvol: a batch of 6 slices from 6 / `per_case` case draws, `per_case` each."""
    ds = training_dataset(coordinate_shards, ["u", "v", "w"], (8, 8), batch_size=6, oversampling=0.33, seed=3,
                          augment=False, patches_per_case=per_case, slice_axis=2)
    cases_per_batch = []
    for image, _ in _take(ds, 6):
        numbers = image[:, 0, 0, 3]
        assert np.all(image[..., 3] == numbers[:, None, None])
        groups = numbers.reshape(-1, per_case)
        assert np.all(groups == groups[:, :1])  # consecutive patches of one draw share the case
        cases_per_batch.append(len(set(numbers.tolist())))
    assert max(cases_per_batch) >= 2


def test_augmented_2d_batches(coordinate_shards):
    ds = training_dataset(coordinate_shards, ["u", "v", "w"], (8, 8), batch_size=4, oversampling=1.0, seed=4,
                          augment=True, elastic=True, slice_axis=0, threads=1)
    held = 0
    for image, seg in _take(ds, 4):
        assert image.shape == (4, 8, 8, 4) and seg.shape == (4, 8, 8) and np.isfinite(image).all()
        held += int((seg.reshape(4, -1).max(axis=1) == 1).sum())
    assert held >= 10  # rotated or scaled patches may lose the single voxel now and then


def test_2d_validation_patches(coordinate_shards):
    images, segs = validation_patches(coordinate_shards, ["u", "v"], (8, 8), 6, seed=0, slice_axis=1)
    assert images.shape == (6, 8, 8, 4) and segs.shape == (6, 8, 8)
    assert np.all(images[..., 1] == images[:, :1, :1, 1])
