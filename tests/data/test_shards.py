import numpy as np
import pytest

from unet.data import shards
from unet.data.shards import read_cases, write_shards
from unet.io.atomic import save_npy

SHAPES = {"a": (5, 6, 7), "b": (8, 4, 3), "c": (6, 6, 6)}


@pytest.fixture
def preprocessed(tmp_path):
    """Three cases of different shapes, as the preprocess stage writes them."""
    rng = np.random.default_rng(0)
    out = tmp_path / "preprocessed"
    for cid, shape in SHAPES.items():
        save_npy(out / f"{cid}.npy", rng.normal(size=shape + (2,)).astype(np.float32))
        save_npy(out / f"{cid}_seg.npy", rng.integers(0, 4, size=shape).astype(np.uint8))
    return out


def _read(shard_dir, ids):
    return {item["case"].numpy().decode(): (item["image"].numpy(), item["seg"].numpy())
            for item in read_cases(shard_dir, ids)}


def _check_equal(got, preprocessed, ids):
    assert sorted(got) == sorted(ids)
    for cid in ids:
        image, seg = got[cid]
        want_image = np.load(preprocessed / f"{cid}.npy")
        want_seg = np.load(preprocessed / f"{cid}_seg.npy")
        assert image.dtype == np.float32 and seg.dtype == np.uint8
        assert image.shape == SHAPES[cid] + (2,) and seg.shape == SHAPES[cid]
        np.testing.assert_array_equal(image, want_image)
        np.testing.assert_array_equal(seg, want_seg)


def test_roundtrip_returns_exactly_the_requested_cases(preprocessed, tmp_path):
    out = tmp_path / "shards"
    index = write_shards(preprocessed, list(SHAPES), out)
    assert [c for s in index["shards"] for c in s["cases"]] == list(SHAPES)
    assert (out / shards.INDEX).is_file()
    _check_equal(_read(out, ["a", "c"]), preprocessed, ["a", "c"])
    _check_equal(_read(out, list(SHAPES)), preprocessed, list(SHAPES))


def test_one_case_per_shard_reads_only_the_wanted_shards(preprocessed, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "TARGET_SHARD_BYTES", 1)  # every case fills a shard
    out = tmp_path / "shards"
    index = write_shards(preprocessed, list(SHAPES), out)
    assert [s["cases"] for s in index["shards"]] == [["a"], ["b"], ["c"]]
    assert len(list(out.glob("*.tfrecord"))) == 3
    _check_equal(_read(out, ["b"]), preprocessed, ["b"])
    _check_equal(_read(out, ["c", "a"]), preprocessed, ["a", "c"])


def test_unknown_case_names_the_index(preprocessed, tmp_path):
    out = tmp_path / "shards"
    write_shards(preprocessed, ["a", "b"], out)
    with pytest.raises(KeyError, match=r"index\.json.*'c'"):
        read_cases(out, ["a", "c"])
