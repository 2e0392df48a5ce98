"""unet.io.datasets: what the download stage does with each kind of `task`, and what it says when
a folder is not right."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import unet.io.brats as brats
from unet.io.datasets import download_dataset, fetch_dataset, known_case_ids, prepare_dataset, \
    write_case_list, write_dataset_ok
from unet.io.demo import generate_demo
from unet.io.msd import DatasetError, load_dataset
from unet.io.nifti import save_nifti

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def write_brats(root: Path, ids: tuple[str, ...] = ("P1", "P2")) -> Path:
    """A minimal BraTS challenge folder: patients with four modalities and a seg."""
    for i, pid in enumerate(ids):
        for k, suffix in enumerate(("flair", "t1", "t1ce", "t2")):
            image = np.zeros((8, 8, 8), np.int16)
            image[2:6, 2:6, 2:6] = 100 * (k + 1) + i
            save_nifti(root / pid / f"{pid}_{suffix}.nii.gz", image, AFFINE)
        seg = np.zeros((8, 8, 8), np.uint8)
        seg[3:5, 3:5, 3:5] = 4
        save_nifti(root / pid / f"{pid}_seg.nii.gz", seg, AFFINE)
    return root


@pytest.fixture(scope="module")
def demo_copy_source(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo"), n_train=2, n_test=1, seed=0)


@pytest.fixture
def own_dataset(demo_copy_source: Path, tmp_path: Path) -> Path:
    """A user's own MSD-layout folder (a copy of a small demo), free to break."""
    return Path(shutil.copytree(demo_copy_source, tmp_path / "data" / "MyTask"))


# --- ingest -----------------------------------------------------------------------------------

def test_ingest_converts_the_source_into_data_dir(tmp_path: Path) -> None:
    src = write_brats(tmp_path / "brats")

    ds = prepare_dataset("BraTS", tmp_path / "data" / "BraTS",
                         ingest={"format": "brats", "source": str(src)})

    assert ds.root == tmp_path / "data" / "BraTS"
    assert [c.id for c in ds.training] == ["P1", "P2"] and ds.label_values == (0, 1, 2, 4)
    assert ds.modalities == ("FLAIR", "T1", "T1ce", "T2")


def test_same_ingest_is_not_converted_again_unless_incomplete_or_a_new_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data" / "BraTS"
    first = write_brats(tmp_path / "first")
    prepare_dataset("BraTS", data_dir, ingest={"format": "brats", "source": str(first)})
    converted = []
    ingest_brats = brats.ingest_brats
    monkeypatch.setattr(brats, "ingest_brats",
                        lambda *a, **k: converted.append(a[0]) or ingest_brats(*a, **k))

    prepare_dataset("BraTS", data_dir, ingest={"format": "brats", "source": str(first)})
    assert converted == []

    (data_dir / "imagesTr" / "P2.nii.gz").unlink()  # an incomplete conversion is redone
    prepare_dataset("BraTS", data_dir, ingest={"format": "brats", "source": str(first)})
    assert converted == [first.resolve()]
    assert (data_dir / "imagesTr" / "P2.nii.gz").is_file()

    second = write_brats(tmp_path / "second", ids=("Q1", "Q2", "Q3"))
    ds = prepare_dataset("BraTS", data_dir, ingest={"format": "brats", "source": str(second)})
    assert converted == [first.resolve(), second.resolve()]
    assert [c.id for c in ds.training] == ["Q1", "Q2", "Q3"]


def test_ingest_with_task_demo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="`task` is demo"):
        prepare_dataset("demo", tmp_path / "demo", ingest={"format": "brats", "source": "x"})
    assert list(tmp_path.iterdir()) == []


def test_unknown_ingest_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="ingest.format: 'nifti'"):
        prepare_dataset("X", tmp_path / "X", ingest={"format": "nifti", "source": "x"})


# --- a user's own folder ----------------------------------------------------------------------

def test_own_folder_is_taken_as_it_is(own_dataset: Path) -> None:
    before = sorted(p.relative_to(own_dataset) for p in own_dataset.rglob("*"))

    ds = prepare_dataset("MyTask", own_dataset)

    assert [c.id for c in ds.training] == ["DEMO_000", "DEMO_001"]
    assert sorted(p.relative_to(own_dataset) for p in own_dataset.rglob("*")) == before


def test_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder") as excinfo:
        prepare_dataset("Nope", tmp_path / "Nope")
    assert str(tmp_path / "Nope") in str(excinfo.value)


def test_missing_dataset_json_says_what_it_needs(own_dataset: Path) -> None:
    (own_dataset / "dataset.json").unlink()

    with pytest.raises(DatasetError) as excinfo:
        prepare_dataset("MyTask", own_dataset)

    message = str(excinfo.value)
    assert str(own_dataset / "dataset.json") in message and "missing" in message
    assert "'modality'" in message and "'labels'" in message and "'training'" in message
    assert "BraTS" not in message


def test_brats_folder_given_as_task_suggests_ingest(tmp_path: Path) -> None:
    src = write_brats(tmp_path / "data" / "BraTS2021")

    with pytest.raises(DatasetError, match="ingest: {format: brats, source: ") as excinfo:
        prepare_dataset("BraTS2021", src)

    assert str(src) in str(excinfo.value)


def test_listed_files_that_do_not_exist_are_all_named(own_dataset: Path) -> None:
    (own_dataset / "labelsTr" / "DEMO_001.nii.gz").unlink()
    (own_dataset / "imagesTs" / "DEMO_002.nii.gz").unlink()

    with pytest.raises(DatasetError, match="2 problem") as excinfo:
        prepare_dataset("MyTask", own_dataset)

    message = str(excinfo.value)
    assert str((own_dataset / "labelsTr" / "DEMO_001.nii.gz").resolve()) in message
    assert str((own_dataset / "imagesTs" / "DEMO_002.nii.gz").resolve()) in message


def test_wrong_channel_count_and_label_grid_are_named(own_dataset: Path) -> None:
    meta = json.loads((own_dataset / "dataset.json").read_text())
    meta["modality"] = {"0": "FLAIR", "1": "T1gd", "2": "T2"}  # the images have two channels
    (own_dataset / "dataset.json").write_text(json.dumps(meta))
    label = own_dataset / "labelsTr" / "DEMO_000.nii.gz"
    save_nifti(label, np.zeros((5, 5, 5), np.uint8), AFFINE)

    with pytest.raises(DatasetError) as excinfo:
        prepare_dataset("MyTask", own_dataset)

    message = str(excinfo.value)
    assert "4 problem(s)" in message  # three images with two channels, one label off the grid
    assert "DEMO_002.nii.gz: 2 channel(s), dataset.json 'modality' declares 3" in message
    assert f"{label.resolve()}: shape (5, 5, 5) does not match" in message


def test_demo_is_generated(tmp_path: Path) -> None:
    ds = prepare_dataset("demo", tmp_path / "demo", demo={"n_train": 2, "n_test": 1})

    assert [c.id for c in ds.training] == ["DEMO_000", "DEMO_001"]
    assert load_dataset(tmp_path / "demo").modalities == ("FLAIR", "T1gd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left


# --- what the workflow knows before its jobs run, and what its local `download` rule does -------

def test_demo_case_ids_come_from_its_settings(tmp_path: Path) -> None:
    assert known_case_ids("demo", tmp_path / "demo", {"n_train": 2, "n_test": 1, "seed": 3}) == \
        (["DEMO_000", "DEMO_001"], ["DEMO_002"])
    assert list(tmp_path.iterdir()) == []


def test_ingest_case_ids_come_from_the_source_then_from_the_conversion(tmp_path: Path) -> None:
    src = write_brats(tmp_path / "brats", ids=("P2", "P1"))
    (src / "P2" / "P2_seg.nii.gz").unlink()  # no segmentation: a test case
    ingest = {"format": "brats", "source": str(src)}
    data_dir = tmp_path / "data" / "BraTS"

    assert known_case_ids("BraTS", data_dir, ingest=ingest) == (["P1"], ["P2"])
    assert not data_dir.exists()
    prepare_dataset("BraTS", data_dir, ingest=ingest)
    shutil.rmtree(src)  # converted: the source is no longer needed
    assert known_case_ids("BraTS", data_dir, ingest=ingest) == (["P1"], ["P2"])


def test_a_dataset_json_on_disk_gives_the_case_ids(own_dataset: Path) -> None:
    assert known_case_ids("MyTask", own_dataset) == (["DEMO_000", "DEMO_001"], ["DEMO_002"])
    (own_dataset / "dataset.json").unlink()
    assert known_case_ids("MyTask", own_dataset) is None


def test_an_msd_task_not_downloaded_has_no_case_ids_yet(tmp_path: Path) -> None:
    assert known_case_ids("Task04_Hippocampus", tmp_path / "Task04_Hippocampus") is None


def test_fetch_writes_nothing_for_the_demo_or_an_ingest(tmp_path: Path) -> None:
    assert fetch_dataset("demo", tmp_path / "demo") == "demo"
    assert fetch_dataset("BraTS", tmp_path / "BraTS", {"format": "brats", "source": "x"}) == "ingest"
    assert list(tmp_path.iterdir()) == []


def test_fetch_checks_a_users_folder(own_dataset: Path, tmp_path: Path) -> None:
    assert fetch_dataset("MyTask", own_dataset) == "folder"
    with pytest.raises(DatasetError, match="no such folder"):
        fetch_dataset("Nope", tmp_path / "Nope")


# --- the jobs of the `download`, `case_list` and `validate` rules -------------------------------

def test_download_records_the_task_its_folder_and_source(own_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "download.json"
    assert download_dataset("MyTask", str(own_dataset), out) == "folder"
    assert json.loads(out.read_text()) == {"task": "MyTask", "path": str(own_dataset), "source": "folder"}
    with pytest.raises(DatasetError, match="no such folder"):
        download_dataset("Nope", tmp_path / "Nope", tmp_path / "nope.json")
    assert not (tmp_path / "nope.json").exists()


def test_case_list_names_training_and_test_cases(own_dataset: Path, tmp_path: Path) -> None:
    write_case_list(own_dataset, tmp_path / "cases.json")
    assert json.loads((tmp_path / "cases.json").read_text()) == {"training": ["DEMO_000", "DEMO_001"],
                                                                 "test": ["DEMO_002"]}


def test_dataset_ok_records_what_the_checked_dataset_holds(tmp_path: Path) -> None:
    out = tmp_path / "results" / "dataset.ok"
    write_dataset_ok("demo", tmp_path / "demo", out, demo={"n_train": 2, "n_test": 1})
    assert json.loads(out.read_text()) == {
        "task": "demo", "path": str(tmp_path / "demo"), "modalities": ["FLAIR", "T1gd"],
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumour", "3": "enhancing tumour"},
        "regions": {"whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]},
        "file_ending": ".nii.gz", "training_cases": 2, "test_cases": 1}


def test_dataset_ok_records_the_ingest(tmp_path: Path) -> None:
    src = write_brats(tmp_path / "brats")
    ingest = {"format": "brats", "source": str(src)}
    write_dataset_ok("BraTS", tmp_path / "data" / "BraTS", tmp_path / "dataset.ok", ingest=ingest)
    record = json.loads((tmp_path / "dataset.ok").read_text())
    assert record["ingest"] == ingest and record["training_cases"] == 2 and record["test_cases"] == 0


def test_a_broken_dataset_writes_no_dataset_ok(own_dataset: Path, tmp_path: Path) -> None:
    (own_dataset / "labelsTr" / "DEMO_001.nii.gz").unlink()
    with pytest.raises(DatasetError, match="DEMO_001"):
        write_dataset_ok("MyTask", own_dataset, tmp_path / "dataset.ok")
    assert not (tmp_path / "dataset.ok").exists()


JOB = textwrap.dedent("""
    import sys
    from unet.io.datasets import dataset_job_log
    from unet.io.download import DownloadError
    from unet.io.msd import DatasetError
    errors = {"data": DatasetError("data/X/dataset.json: missing"),
              "download": DownloadError("http://x: 404; check the task name"),
              "bug": KeyError("modality")}
    with dataset_job_log(sys.argv[1]):
        print("checking", flush=True)
        if sys.argv[2] in errors:
            raise errors[sys.argv[2]]
    print("done")
""")


@pytest.mark.parametrize("mode,message", [("data", "DatasetError: data/X/dataset.json: missing"),
                                          ("download", "DownloadError: http://x: 404; check the task name")])
def test_a_data_error_ends_the_job_with_its_message_only(tmp_path: Path, mode: str, message: str) -> None:
    log = tmp_path / "job.log"
    result = subprocess.run([sys.executable, "-c", JOB, str(log), mode], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert log.read_text() == f"checking\n{message}\n"  # no traceback, not even of the exit
    assert "done" not in result.stdout


def test_a_bug_in_a_dataset_job_keeps_its_traceback(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    for mode in ("bug", "ok"):
        result = subprocess.run([sys.executable, "-c", JOB, str(log), mode], capture_output=True,
                                text=True, timeout=60)
        if mode == "bug":
            assert result.returncode == 1 and "Traceback" in log.read_text()
            assert log.read_text().rstrip().endswith("KeyError: 'modality'")
        else:
            assert result.returncode == 0 and log.read_text() == "checking\n" and result.stdout == "done\n"
