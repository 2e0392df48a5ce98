import numpy as np
import pytest

from unet.preprocessing.normalization import ChannelNormalization, normalize, normalize_channel


def masked_image(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((12, 10, 8, 2), np.float32)
    image[2:10, 2:8, 1:7, 0] = rng.normal(300.0, 40.0, size=(8, 6, 6))
    image[2:10, 2:8, 1:7, 1] = rng.normal(-50.0, 5.0, size=(8, 6, 6))
    return image


def test_zscore_with_mask():
    image = masked_image()
    out = normalize(image, [ChannelNormalization("zscore", use_mask=True)] * 2)
    assert out.shape == image.shape and out.dtype == np.float32
    mask = np.any(image != 0, axis=-1)
    for c in range(2):
        inside = out[..., c][mask]
        assert inside.mean() == pytest.approx(0.0, abs=1e-4)
        assert inside.std() == pytest.approx(1.0, abs=1e-4)
        assert (out[..., c][~mask] == 0).all()
        # Same as by hand.
        vals = image[..., c][mask]
        np.testing.assert_allclose(inside, (vals - vals.mean()) / vals.std(), rtol=1e-4, atol=1e-4)


def test_mask_is_union_over_channels():
    image = masked_image()
    image[0, 0, 0, 1] = 7.0  # non-zero in channel 1 only: inside the mask for channel 0 too
    out = normalize(image, [ChannelNormalization("zscore", use_mask=True)] * 2)
    mask = np.any(image != 0, axis=-1)
    vals = image[..., 0][mask]
    assert out[0, 0, 0, 0] == pytest.approx((0.0 - vals.mean()) / vals.std(), rel=1e-4)


def test_zscore_without_mask_uses_all_voxels():
    image = masked_image()
    out = normalize(image, [ChannelNormalization("zscore", use_mask=False)] * 2)
    for c in range(2):
        assert out[..., c].mean() == pytest.approx(0.0, abs=1e-4)
        assert out[..., c].std() == pytest.approx(1.0, abs=1e-4)
    # Background is not zero when the mask is not used.
    assert out[0, 0, 0, 0] == pytest.approx(-image[..., 0].mean() / image[..., 0].std(), rel=1e-4)


def test_ct_clip_then_zscore_with_dataset_stats():
    x = np.array([-2000.0, -100.0, 0.0, 40.0, 100.0, 3000.0], np.float32).reshape(1, 2, 3, 1)
    norm = ChannelNormalization("ct", clip=(-100.0, 200.0), mean=50.0, std=25.0)
    out = normalize(x, [norm])
    expected = (np.clip(x, -100, 200) - 50.0) / 25.0
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out.ravel(), [-6.0, -6.0, -2.0, -0.4, 2.0, 6.0], rtol=1e-6)


def test_channels_normalized_independently():
    image = masked_image()
    norms = [ChannelNormalization("ct", clip=(0.0, 400.0), mean=300.0, std=40.0),
             ChannelNormalization("zscore", use_mask=True)]
    out = normalize(image, norms)
    np.testing.assert_allclose(out[..., 0], (np.clip(image[..., 0], 0, 400) - 300) / 40, rtol=1e-5, atol=1e-5)
    mask = np.any(image != 0, axis=-1)
    assert out[..., 1][mask].std() == pytest.approx(1.0, abs=1e-4)


def test_constant_channel_does_not_divide_by_zero():
    out = normalize_channel(np.full((3, 3, 3), 5.0), ChannelNormalization("zscore"), None)
    assert np.isfinite(out).all() and (out == 0).all()


def test_channel_count_mismatch():
    with pytest.raises(ValueError, match="2 channels.*3"):
        normalize(masked_image(), [ChannelNormalization("zscore")] * 3)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="minmax"):
        normalize_channel(np.ones((2, 2, 2)), ChannelNormalization("minmax"), None)


def test_json_round_trip():
    for n in (ChannelNormalization("zscore", use_mask=True),
              ChannelNormalization("ct", clip=(-1000.0, 400.0), mean=10.0, std=200.0)):
        assert ChannelNormalization.from_json(n.to_json()) == n


def test_the_plan_names_the_channels_normalized_inside_the_mask():
    from unet.preprocessing.plan import Plan

    norms = (ChannelNormalization("ct", clip=(0.0, 1.0), mean=0.5, std=0.2),
             ChannelNormalization("zscore", use_mask=True), ChannelNormalization("zscore"))
    plan = Plan(dataset="t", modalities=("CT", "T1", "T2"), labels={0: "background", 1: "a"}, spacing=(1.0,) * 3,
                patch_size=(8,) * 3, batch_size=2, filters=(4,), strides=((1, 1, 1),), kernels=((3, 3, 3),),
                normalization=norms)
    assert plan.mask_channels == (1,) and plan.nonzero_mask
    plain = Plan(**{**plan.__dict__, "normalization": norms[::2]})
    assert plain.mask_channels == () and not plain.nonzero_mask
