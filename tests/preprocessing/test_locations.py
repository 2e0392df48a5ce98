import numpy as np
import pytest

from unet.preprocessing.locations import FG_SAMPLES_PER_CLASS, case_seed, foreground_locations


def seg_with(counts, shape=(30, 40, 50), seed=0):
    """A class-index map with `counts[k]` voxels of class k + 1 at random places."""
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.uint8)
    order = rng.permutation(seg.size)
    start = 0
    for k, n in enumerate(counts, start=1):
        seg.reshape(-1)[order[start:start + n]] = k
        start += n
    return seg


def test_rows_hold_their_class_and_cap_applies():
    seg = seg_with([25000, 300, 0, 7])  # class 3 absent
    fg = foreground_locations(seg, num_classes=5, seed=1, cap=10000)
    assert fg.dtype == np.int32 and fg.ndim == 2 and fg.shape[1] == 4
    classes, counts = np.unique(fg[:, 0], return_counts=True)
    assert classes.tolist() == [1, 2, 4] and counts.tolist() == [10000, 300, 7]
    assert (np.diff(fg[:, 0]) >= 0).all()  # classes ascending
    np.testing.assert_array_equal(seg[fg[:, 1], fg[:, 2], fg[:, 3]], fg[:, 0])
    # Without replacement: no voxel twice; below the cap, every voxel of the class.
    assert len(np.unique(fg[:, 1:], axis=0)) == len(fg)
    assert len(fg[fg[:, 0] == 2]) == (seg == 2).sum()


def test_default_cap_is_nnunets():
    assert FG_SAMPLES_PER_CLASS == 10000
    fg = foreground_locations(seg_with([12000]), num_classes=2, seed=0)
    assert len(fg) == 10000


def test_same_seed_same_sample_other_seed_other_sample():
    seg = seg_with([5000, 40])
    a = foreground_locations(seg, 3, seed=case_seed("BRATS_001"), cap=1000)
    b = foreground_locations(seg, 3, seed=case_seed("BRATS_001"), cap=1000)
    c = foreground_locations(seg, 3, seed=case_seed("BRATS_002"), cap=1000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[a[:, 0] == 1], c[c[:, 0] == 1])
    np.testing.assert_array_equal(a[a[:, 0] == 2], c[c[:, 0] == 2])  # under the cap: all of them
    assert case_seed("BRATS_001") == case_seed("BRATS_001") != case_seed("BRATS_002")


def test_no_foreground_gives_empty_rows():
    fg = foreground_locations(np.zeros((4, 5, 6), np.uint8), num_classes=3, seed=0)
    assert fg.shape == (0, 4) and fg.dtype == np.int32


def test_class_beyond_num_classes_is_an_error():
    with pytest.raises(ValueError, match="class index 3"):
        foreground_locations(seg_with([5, 5, 5]), num_classes=3, seed=0)


def test_the_ignore_label_is_no_foreground():
    seg = seg_with([50, 30, 400])  # class 3 is the ignore label's index (= the 3 predicted classes)
    fg = foreground_locations(seg, num_classes=3, seed=0, ignore_index=3)
    assert set(fg[:, 0].tolist()) == {1, 2} and len(fg) == 80
    with pytest.raises(ValueError, match="class index 3"):  # without it, index 3 is no class of 3
        foreground_locations(seg, num_classes=3, seed=0)
