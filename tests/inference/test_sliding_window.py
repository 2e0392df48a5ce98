"""Tests of unet/inference/sliding_window.py with numpy predictors (no network needed)."""

from __future__ import annotations

import numpy as np
import pytest

from unet.inference.sliding_window import (
    gaussian_importance_map,
    sliding_window_inference,
    sliding_window_slices,
    window_starts,
)

BLENDS = ["gaussian", "constant"]


def one_hot_positive(batch: np.ndarray) -> np.ndarray:
    """Pointwise predictor: class 1 where the first channel is > 0, class 0 elsewhere."""
    positive = (batch[..., 0] > 0).astype(np.float32)
    return np.stack([1 - positive, positive], axis=-1)


def window_dependent(batch: np.ndarray) -> np.ndarray:
    """Non-pointwise predictor: each voxel's output depends on the mean of its whole window."""
    means = batch.mean(axis=tuple(range(1, batch.ndim)), keepdims=True)[..., 0]
    p = 1 / (1 + np.exp(-(batch[..., 0] + 3 * means)))
    return np.stack([1 - p, p], axis=-1).astype(np.float32)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(20, 23, 18, 1)).astype(np.float32)


# window_starts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size,patch,overlap", [
    (20, 8, 0.5), (21, 8, 0.5), (100, 16, 0.25), (33, 32, 0.5), (50, 7, 0.0), (9, 3, 0.9)])
def test_window_starts_cover_every_index_and_end_flush(size, patch, overlap):
    starts = window_starts(size, patch, overlap)
    covered = np.zeros(size, dtype=bool)
    for s in starts:
        assert 0 <= s and s + patch <= size
        covered[s:s + patch] = True
    assert covered.all()
    assert starts[0] == 0
    assert starts[-1] + patch == size
    assert starts == sorted(set(starts))
    step = max(1, int(patch * (1 - overlap)))
    assert all(b - a <= step for a, b in zip(starts, starts[1:]))


def test_window_starts_examples():
    assert window_starts(20, 8, 0.5) == [0, 4, 8, 12]
    assert window_starts(21, 8, 0.5) == [0, 4, 8, 12, 13]


@pytest.mark.parametrize("size", [1, 5, 8])
def test_window_starts_single_window_when_image_not_larger_than_patch(size):
    assert window_starts(size, 8, 0.5) == [0]


def test_window_starts_overlap_zero_tiles_without_overlap():
    assert window_starts(32, 8, 0.0) == [0, 8, 16, 24]


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5])
def test_window_starts_rejects_bad_overlap(overlap):
    with pytest.raises(ValueError, match="overlap"):
        window_starts(32, 8, overlap)


# gaussian_importance_map -----------------------------------------------------------------------

def test_gaussian_map_max_one_at_centre_and_symmetric():
    g = gaussian_importance_map((9, 10, 7))
    assert g.dtype == np.float32 and g.shape == (9, 10, 7)
    assert g.max() == 1
    # Odd axes peak at the middle voxel; the even axis at its two middle voxels.
    assert g[4, 4, 3] == 1 and g[4, 5, 3] == 1
    assert g[0, 0, 0] < g[2, 2, 1] < g[4, 4, 3]
    for axis in range(3):
        np.testing.assert_array_equal(g, np.flip(g, axis=axis))


def test_gaussian_map_sigma_scale():
    g = gaussian_importance_map((17,), sigma_scale=0.25)
    sigma = 0.25 * 17
    np.testing.assert_allclose(g[8 + 3], np.exp(-0.5 * (3 / sigma) ** 2), rtol=1e-6)


def test_gaussian_map_strictly_positive_even_when_tails_underflow():
    # With sigma = 0.64 voxels the raw Gaussian is 0 in float32 far from the centre.
    raw = np.exp(-0.5 * ((np.arange(64) - 31.5) / 0.64) ** 2).astype(np.float32)
    assert (raw == 0).any()
    g = gaussian_importance_map((64, 64, 8), sigma_scale=0.01)
    assert (g > 0).all()
    assert g[0, 0, 0] == g.min()  # the far corner got the smallest non-zero weight
    assert (gaussian_importance_map((16, 16, 16)) > 0).all()


# sliding_window_inference ----------------------------------------------------------------------

@pytest.mark.parametrize("blend", BLENDS)
def test_constant_predictor_gives_that_constant(volume, blend):
    # Dyadic values are exact in float32, so the weighted average must reproduce them exactly.
    const = np.array([0.25, 0.5, 0.125, 0.125], dtype=np.float32)

    def predictor(batch):
        return np.broadcast_to(const, batch.shape[:-1] + (4,)).copy()

    out = sliding_window_inference(volume, predictor, (8, 8, 8), blend=blend)
    assert out.shape == volume.shape[:3] + (4,) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.broadcast_to(const, out.shape))


@pytest.mark.parametrize("blend", BLENDS)
def test_constant_non_dyadic_predictor_up_to_rounding(volume, blend):
    const = np.array([0.1, 0.3, 0.6], dtype=np.float32)
    out = sliding_window_inference(
        volume, lambda b: np.broadcast_to(const, b.shape[:-1] + (3,)), (8, 8, 8), blend=blend,
        overlap=0.75)
    np.testing.assert_allclose(out, np.broadcast_to(const, out.shape), rtol=1e-6)


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_pointwise_predictor_reproduced_exactly(volume, blend, overlap):
    out = sliding_window_inference(volume, one_hot_positive, (8, 8, 8), overlap=overlap,
                                   blend=blend, num_classes=2)
    np.testing.assert_array_equal(out, one_hot_positive(volume[None])[0])


@pytest.mark.parametrize("blend", BLENDS)
def test_volume_smaller_than_patch_is_padded_and_cropped_back(blend):
    volume = np.random.default_rng(1).normal(size=(10, 40, 7, 1)).astype(np.float32)
    shapes = []

    def predictor(batch):
        shapes.append(batch.shape)
        return one_hot_positive(batch)

    out = sliding_window_inference(volume, predictor, (16, 16, 16), blend=blend)
    assert out.shape == (10, 40, 7, 2)
    assert all(s[1:] == (16, 16, 16, 1) for s in shapes)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, one_hot_positive(volume[None])[0])


def test_gaussian_blend_weights_each_window_by_its_importance_map():
    # Two windows along x (starts 0 and 4); each predicts its own start everywhere.
    volume = np.broadcast_to(np.arange(12, dtype=np.float32)[:, None, None, None], (12, 8, 8, 1))

    def predictor(batch):
        return np.broadcast_to(batch[:, :1, :1, :1, :], batch.shape).copy()

    out = sliding_window_inference(volume, predictor, (8, 8, 8), overlap=0.5)
    g = gaussian_importance_map((8, 8, 8))[:, 0, 0]  # the other axes cancel out
    expected = np.empty(12)
    for x in range(12):
        w0 = g[x] if x < 8 else 0.0
        w1 = g[x - 4] if x >= 4 else 0.0
        expected[x] = (w0 * 0 + w1 * 4) / (w0 + w1)
    np.testing.assert_allclose(out[:, 3, 3, 0], expected, rtol=1e-5)
    constant = sliding_window_inference(volume, predictor, (8, 8, 8), overlap=0.5,
                                        blend="constant")
    np.testing.assert_allclose(constant[:, 3, 3, 0], [0] * 4 + [2] * 4 + [4] * 4)


def test_batch_size_does_not_change_output_and_bounds_batches(volume):
    sizes = []

    def predictor(batch):
        sizes.append(batch.shape[0])
        return window_dependent(batch)

    one = sliding_window_inference(volume, predictor, (8, 8, 8), batch_size=1)
    n_windows = len(sizes)
    assert sizes == [1] * n_windows
    sizes.clear()
    three = sliding_window_inference(volume, predictor, (8, 8, 8), batch_size=3)
    assert max(sizes) == 3 and sum(sizes) == n_windows
    assert sizes[:-1] == [3] * (len(sizes) - 1)
    np.testing.assert_array_equal(one, three)
    # The predictor is not pointwise, so this comparison is not trivially true.
    assert not np.array_equal(one, window_dependent(volume[None])[0])


def test_num_classes_mismatch_raises(volume):
    with pytest.raises(ValueError, match="predictor returned shape"):
        sliding_window_inference(volume, one_hot_positive, (8, 8, 8), num_classes=3)


def test_bad_blend_raises_naming_allowed_values(volume):
    with pytest.raises(ValueError, match="gaussian.*constant"):
        sliding_window_inference(volume, one_hot_positive, (8, 8, 8), blend="mean")


@pytest.mark.parametrize("shape,patch", [((20, 20, 20), (8, 8, 8)), ((20, 20, 20, 1), (8, 8))])
def test_wrong_dimensions_raise(shape, patch):
    with pytest.raises(ValueError, match="channels-last"):
        sliding_window_inference(np.zeros(shape, np.float32), one_hot_positive, patch)


def test_2d_volume_works():
    image = np.random.default_rng(2).normal(size=(30, 13, 2)).astype(np.float32)
    out = sliding_window_inference(image, one_hot_positive, (16, 16), overlap=0.5)
    np.testing.assert_array_equal(out, one_hot_positive(image[None])[0])


def test_padding_is_zero_and_split_evenly():
    seen = []

    def predictor(batch):
        seen.append(batch.copy())
        return one_hot_positive(batch)

    sliding_window_inference(np.ones((10, 16, 16, 1), np.float32), predictor, (16, 16, 16))
    (batch,) = seen
    profile = batch[0, :, 0, 0, 0]
    np.testing.assert_array_equal(profile, [0] * 3 + [1] * 10 + [0] * 3)


@pytest.mark.parametrize("blend", BLENDS)
def test_convolution_predictor_gives_the_convolution_of_the_whole_image(blend):
    """A predictor that convolves each window reproduces the whole image's convolution, except
    where a window's edge (zero padding of the per-window convolution) leaks into the blend."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    # A smooth image, so the convolution is a meaningful signal rather than noise.
    volume = ndimage.gaussian_filter(rng.normal(size=(40, 36, 44)), 3)[..., None].astype(np.float32)
    # A derivative along x plus a smoothing: its output differs clearly from its input.
    kernel = np.ones((3, 3, 3), np.float32) / 27
    kernel[0] -= 0.5 / 9
    kernel[2] += 0.5 / 9

    def convolve(batch):
        return np.stack([ndimage.convolve(w[..., 0], kernel, mode="constant")[..., None] for w in batch])

    expected = ndimage.convolve(volume[..., 0], kernel, mode="constant")
    out = sliding_window_inference(volume, convolve, (16, 16, 16), overlap=0.5, blend=blend, batch_size=4)[..., 0]
    interior = (slice(1, -1),) * 3  # the whole image's own border is zero-padded in both
    error = np.abs(out - expected)[interior]
    scale = np.abs(expected[interior]).mean()
    # Window edges are a small part of the blend: far smaller with Gaussian weights.
    assert error.mean() < (0.02 if blend == "gaussian" else 0.10) * scale
    assert np.corrcoef(out[interior].ravel(), expected[interior].ravel())[0, 1] > (0.99 if blend == "gaussian" else 0.98)
    # And the blend is not the identity: the output really is the convolution, not the input.
    assert np.abs(out - volume[..., 0])[interior].mean() > 2 * error.mean()


# sliding_window_slices: a 2D predictor over every slice of a volume -----------------------------

@pytest.mark.parametrize("slice_axis", [0, 2])
@pytest.mark.parametrize("blend", BLENDS)
def test_slices_give_the_2d_sliding_window_of_each_slice(volume, slice_axis, blend):
    """The batched run over all slices is, slice by slice, the 2D sliding window of that slice by
    hand (a window-dependent predictor, windows batched across slices, a padded axis)."""
    calls = []

    def predictor(batch):
        calls.append(len(batch))
        assert batch.ndim == 4  # 2D windows (B, pa, pb, C)
        return window_dependent(batch)

    patch = (8, 20)  # the second in-plane axis (23 or 18 voxels) needs one or more windows
    out = sliding_window_slices(volume, predictor, patch, slice_axis, overlap=0.5, blend=blend, batch_size=5)
    assert out.shape == volume.shape[:3] + (2,) and out.flags.c_contiguous
    assert max(calls) == 5
    for i in range(volume.shape[slice_axis]):
        by_hand = sliding_window_inference(np.take(volume, i, axis=slice_axis), window_dependent, patch,
                                           overlap=0.5, blend=blend, batch_size=1)
        np.testing.assert_allclose(np.take(out, i, axis=slice_axis), by_hand, rtol=1e-6, atol=1e-7)


def test_slices_reject_a_3d_patch_or_a_bad_axis(volume):
    with pytest.raises(ValueError, match="2-entry patch_size"):
        sliding_window_slices(volume, one_hot_positive, (8, 8, 8), 2)
    with pytest.raises(ValueError, match="slice axis"):
        sliding_window_slices(volume, one_hot_positive, (8, 8), 3)
