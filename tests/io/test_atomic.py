import numpy as np
import pytest

from unet.io.atomic import atomic_dir, atomic_path, load_npy, read_json, save_npy, write_json


def test_exception_leaves_no_temp_file_and_no_target(tmp_path):
    target = tmp_path / "sub" / "out.npy"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            assert tmp.name.endswith(".npy")
            np.save(tmp, np.zeros(3))
            assert tmp.exists()
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_exception_keeps_a_previous_target_untouched(tmp_path):
    target = tmp_path / "plans.json"
    write_json(target, {"v": 1})
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise KeyError("boom")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["plans.json"]


def test_success_renames_onto_target(tmp_path):
    target = tmp_path / "a.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz")  # the writer sees the extension
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_json_and_npy_round_trip(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2.5], "b": None})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2.5], "b": None}
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::-1]  # non-contiguous view
    save_npy(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(load_npy(tmp_path / "x.npy"), arr)
    mm = load_npy(tmp_path / "x.npy", mmap=True)
    assert isinstance(mm, np.memmap)
    np.testing.assert_array_equal(mm, arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.npy"]


def test_atomic_dir_replaces_a_folder_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.pb").write_text("first")
    assert (target / "a.pb").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.pb").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["a.pb"]  # the old folder untouched
    with atomic_dir(target) as tmp:
        (tmp / "b.pb").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.pb"]  # replaced whole, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]  # no temporary folder left
    (tmp_path / "file").write_text("x")
    with atomic_dir(tmp_path / "file") as tmp:
        (tmp / "c").write_text("y")
    assert (tmp_path / "file" / "c").read_text() == "y"
