import numpy as np
import pytest

from unet.data import shards
from unet.data.shards import read_cases, write_shards, write_shards_and_splits
from unet.data.splits import make_splits
from unet.io.atomic import read_json, save_npy, write_json

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


def _read_locations(shard_dir, ids):
    return {item["case"].numpy().decode(): item["fg"].numpy() for item in read_cases(shard_dir, ids)}


def test_recorded_locations_survive_the_round_trip(preprocessed, tmp_path):
    rng = np.random.default_rng(1)
    written = {}
    for cid, shape in SHAPES.items():
        rows = np.column_stack([rng.integers(1, 4, 7), *(rng.integers(0, n, 7) for n in shape)]).astype(np.int32)
        written[cid] = rows
        save_npy(preprocessed / f"{cid}_fg.npy", rows)
    save_npy(preprocessed / "c_fg.npy", np.zeros((0, 4), np.int32))  # a case without foreground
    written["c"] = np.zeros((0, 4), np.int32)
    write_shards(preprocessed, list(SHAPES), tmp_path / "shards")
    got = _read_locations(tmp_path / "shards", list(SHAPES))
    for cid, rows in written.items():
        assert got[cid].dtype == np.int32 and got[cid].shape == rows.shape
        np.testing.assert_array_equal(got[cid], rows)


def test_missing_locations_are_sampled_from_the_seg(preprocessed, tmp_path):
    write_shards(preprocessed, ["a", "b"], tmp_path / "shards")  # no _fg.npy files
    got = _read_locations(tmp_path / "shards", ["a", "b"])
    for cid in ("a", "b"):
        seg = np.load(preprocessed / f"{cid}_seg.npy")
        rows = got[cid]
        assert sorted(set(rows[:, 0])) == sorted(set(np.unique(seg)) - {0})
        np.testing.assert_array_equal(seg[rows[:, 1], rows[:, 2], rows[:, 3]], rows[:, 0])
        assert len(rows) == np.count_nonzero(seg)  # below the cap: every foreground voxel


def test_locations_from_seg_caps_each_class_and_handles_no_foreground():
    seg = np.zeros((30, 30, 30), np.uint8)
    seg[:20] = 1
    seg[25, 3, 4] = 3
    rows = shards.locations_from_seg(seg, seed=0, cap=100)
    assert rows.dtype == np.int32 and rows.shape == (101, 4)
    assert (rows[:, 0] == 1).sum() == 100 and (rows[:, 0] == 3).sum() == 1
    assert len({tuple(r) for r in rows}) == 101  # without repeats
    np.testing.assert_array_equal(seg[rows[:, 1], rows[:, 2], rows[:, 3]], rows[:, 0])
    assert shards.locations_from_seg(np.zeros((4, 4, 4), np.uint8)).shape == (0, 4)


def test_bad_locations_file_names_the_file(preprocessed, tmp_path):
    save_npy(preprocessed / "a_fg.npy", np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match=r"a_fg\.npy.*\(N, 4\)"):
        write_shards(preprocessed, ["a"], tmp_path / "shards")
    save_npy(preprocessed / "a_fg.npy", np.array([[1, 5, 0, 0]], np.int32))  # x = 5 outside (5, 6, 7)
    with pytest.raises(ValueError, match=r"a_fg\.npy.*outside"):
        write_shards(preprocessed, ["a"], tmp_path / "shards")


def test_shards_without_locations_ask_for_a_rerun(preprocessed, tmp_path):
    out = tmp_path / "shards"
    write_shards(preprocessed, ["a"], out)
    index = read_json(out / shards.INDEX)
    del index["format"]  # as written before locations were stored
    write_json(out / shards.INDEX, index)
    with pytest.raises(ValueError, match="rerun the shard rule"):
        read_cases(out, ["a"])


def test_the_rule_writes_the_shards_and_the_splits(preprocessed, tmp_path):
    index = write_shards_and_splits(preprocessed, ["c", "a", "b"], tmp_path / "shards", tmp_path / "splits.json",
                                    nfolds=3, seed=5)
    assert index == read_json(tmp_path / "shards" / "index.json")
    assert [case for shard in index["shards"] for case in shard["cases"]] == ["c", "a", "b"]
    assert read_json(tmp_path / "splits.json") == make_splits(["a", "b", "c"], 3, 5)
    assert read_json(tmp_path / "splits.json") != make_splits(["a", "b", "c"], 3, 0)  # the seed is used


def test_a_cascade_s_records_carry_the_previous_stage_as_one_hot_channels(preprocessed, tmp_path):
    rng = np.random.default_rng(1)
    previous = {cid: rng.integers(0, 4, size=shape).astype(np.uint8) for cid, shape in SHAPES.items()}
    for cid, indices in previous.items():
        save_npy(tmp_path / "previous" / f"{cid}.npy", indices)
    index = write_shards_and_splits(preprocessed, list(SHAPES), tmp_path / "shards", tmp_path / "splits.json", 2,
                                    previous_dir=tmp_path / "previous", num_classes=4)
    assert index["channels"] == 2 + 3 and shards.shard_channels(tmp_path / "shards") == 5
    plain = write_shards(preprocessed, list(SHAPES), tmp_path / "plain")
    for cid, (image, seg) in _read(tmp_path / "shards", list(SHAPES)).items():
        assert image.shape == SHAPES[cid] + (5,)
        np.testing.assert_array_equal(image[..., :2], np.load(preprocessed / f"{cid}.npy"))
        np.testing.assert_array_equal(image[..., 2:], np.eye(4, dtype=np.float32)[previous[cid]][..., 1:])
        np.testing.assert_array_equal(seg, np.load(preprocessed / f"{cid}_seg.npy"))
        # The input pipeline's buffers are sized by the decoded bytes, the extra channels included.
        assert shards.case_bytes(tmp_path / "shards", [cid])[cid] == \
            shards.case_bytes(tmp_path / "plain", [cid])[cid] + 3 * 4 * int(np.prod(SHAPES[cid]))
    assert plain["channels"] == 2


def test_a_previous_stage_of_another_shape_names_the_file(preprocessed, tmp_path):
    for cid, shape in SHAPES.items():
        save_npy(tmp_path / "previous" / f"{cid}.npy", np.zeros(shape if cid != "b" else (8, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"previous/b\.npy: shape \(8, 4, 4\)"):
        write_shards(preprocessed, list(SHAPES), tmp_path / "shards", tmp_path / "previous", num_classes=4)
    with pytest.raises(ValueError, match="needs num_classes"):
        write_shards(preprocessed, list(SHAPES), tmp_path / "shards", tmp_path / "previous")
