"""unet.io.validation: a small demo dataset (real NIfTI files) broken one way per test, and what
the one error says about it."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet.io.datasets import prepare_dataset
from unet.io.demo import generate_demo
from unet.io.images import read_image, save_image
from unet.io.msd import DatasetError, load_dataset
from unet.io.nifti import save_nifti
from unet.io.validation import (Expected, dataset_problems, grid_problems, label_problems,
                                validate_dataset)

EXPECTED = Expected(modalities=("FLAIR", "T1gd"), label_values=(0, 1, 2, 3))


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo"), n_train=3, n_test=1, seed=0)


@pytest.fixture
def root(demo_source: Path, tmp_path: Path) -> Path:
    """A copy of the small demo, free to break: DEMO_000..002 training, DEMO_003 test."""
    return Path(shutil.copytree(demo_source, tmp_path / "MyTask"))


def image(root: Path, cid: str) -> Path:
    folder = "imagesTs" if cid == "DEMO_003" else "imagesTr"
    return (root / folder / f"{cid}.nii.gz").resolve()


def label(root: Path, cid: str) -> Path:
    return (root / "labelsTr" / f"{cid}.nii.gz").resolve()


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def edit_meta(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    (root / "dataset.json").write_text(json.dumps(meta))


def problems_of(root: Path, workers: int = 1) -> list[str]:
    return dataset_problems(load_dataset(root), workers=workers, progress=False)


def error_of(root: Path) -> str:
    with pytest.raises(DatasetError) as excinfo:
        prepare_dataset("MyTask", root)
    return str(excinfo.value)


def test_a_sound_dataset_has_no_problems(root: Path) -> None:
    assert problems_of(root) == []
    validate_dataset(load_dataset(root), progress=False)  # does not raise


# --- dataset.json -----------------------------------------------------------------------------

def test_unreadable_dataset_json_is_named(root: Path) -> None:
    (root / "dataset.json").write_bytes(b'{"name": "\xff\xfe"}')

    message = error_of(root)

    assert f"{root / 'dataset.json'}: cannot be read" in message


def test_invalid_json_is_named(root: Path) -> None:
    (root / "dataset.json").write_text('{"name": "x",')

    assert f"{root / 'dataset.json'}: not valid JSON" in error_of(root)


def test_every_missing_required_key_is_named_at_once(root: Path) -> None:
    edit_meta(root, modality=None, training=None)

    message = error_of(root)

    assert f"{root / 'dataset.json'}: 2 problem(s)" in message
    assert "required key 'modality' is missing" in message
    assert "required key 'training' is missing" in message


def test_malformed_entries_are_named(root: Path) -> None:
    edit_meta(root, labels={"0": "background", "one": "edema"},
              training=[{"image": "./imagesTr/DEMO_000.nii.gz"}])

    message = error_of(root)

    assert "'labels' keys must be integer label values" in message
    assert "'training' entry 0" in message and "\"label\": path" in message


def test_counts_that_disagree_with_the_lists_are_named(root: Path) -> None:
    edit_meta(root, numTraining=5)

    assert problems_of(root) == [f"{root / 'dataset.json'}: 'numTraining' is 5, but 3 case(s) "
                                 f"are listed under 'training'"]


def test_a_case_listed_twice_is_named(root: Path) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    edit_meta(root, numTraining=None, training=meta["training"] + meta["training"][:1])

    assert problems_of(root) == [f"{root / 'dataset.json'}: case id 'DEMO_000' is listed 2 times; "
                                 f"each case's files must have a name of their own"]


# --- files ------------------------------------------------------------------------------------

def test_listed_file_missing_on_disk_is_named(root: Path) -> None:
    label(root, "DEMO_001").unlink()

    assert problems_of(root) == [f"{label(root, 'DEMO_001')}: listed in dataset.json but does "
                                 f"not exist"]


def test_truncated_nifti_is_named(root: Path) -> None:
    path = image(root, "DEMO_002")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    [problem] = problems_of(root)

    assert problem.startswith(f"{path}: cannot read NIfTI image")


def test_file_that_is_not_nifti_is_named(root: Path) -> None:
    path = label(root, "DEMO_000")
    path.write_bytes(gzip.compress(b"not a NIfTI file at all"))

    [problem] = problems_of(root)

    assert problem.startswith(f"{path}: cannot read NIfTI image")


@pytest.mark.parametrize("ending", [".nrrd", ".mhd"])
def test_a_dataset_in_another_format_is_read_and_checked_alike(tmp_path: Path, ending: str) -> None:
    root = generate_demo(tmp_path / "MyTask", n_train=3, n_test=1, seed=0, file_ending=ending)
    assert problems_of(root) == []
    bad_label, bad_image = root / "labelsTr" / f"DEMO_001{ending}", root / "imagesTr" / f"DEMO_002{ending}"
    data, affine = read_image(bad_label)
    save_image(bad_label, data, affine + np.diag([0, 0, 0.1, 0]))
    data_file = bad_image.with_suffix(".zraw") if ending == ".mhd" else bad_image
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])

    problems = problems_of(root)

    assert len(problems) == 2
    assert problems[0].startswith(f"{bad_label.resolve()}: affine differs from its image's")
    assert problems[1].startswith(f"{bad_image.resolve()}: cannot read image")


def test_label_shape_mismatch_is_named(root: Path) -> None:
    data, affine = read(label(root, "DEMO_001"))
    save_nifti(label(root, "DEMO_001"), data[:-1], affine)

    [problem] = problems_of(root)

    assert problem.startswith(f"{label(root, 'DEMO_001')}: shape {data[:-1].shape} does not match "
                              f"its image's {data.shape}")


def test_label_affine_mismatch_is_named_beyond_the_tolerance_only(root: Path) -> None:
    data, affine = read(label(root, "DEMO_000"))
    nudged, moved = affine.copy(), affine.copy()
    nudged[0, 3] += 1e-4  # float32 rounding between tools: the same grid
    moved[0, 3] += 0.5
    save_nifti(label(root, "DEMO_000"), data, nudged)
    assert problems_of(root) == []

    save_nifti(label(root, "DEMO_000"), data, moved)
    [problem] = problems_of(root)

    assert problem == (f"{label(root, 'DEMO_000')}: affine differs from its image's "
                       f"(DEMO_000.nii.gz) by up to 0.5 (tolerance 0.001)")


def test_channel_count_mismatch_is_named(root: Path) -> None:
    data, affine = read(image(root, "DEMO_003"))  # a test image: checked as well
    save_nifti(image(root, "DEMO_003"), np.concatenate([data, data[..., :1]], axis=3), affine)

    assert problems_of(root) == [f"{image(root, 'DEMO_003')}: 3 channel(s), dataset.json "
                                 f"'modality' declares 2 (FLAIR, T1gd)"]


def test_nan_and_infinite_voxels_are_counted_per_channel(root: Path) -> None:
    data, affine = read(image(root, "DEMO_001"))
    data = data.astype(np.float32)
    data[0, 0, :3, 1] = np.nan
    data[1, 1, 0, 1] = np.inf
    data[2, 2, :2, 0] = -np.inf
    save_nifti(image(root, "DEMO_001"), data, affine)

    assert problems_of(root) == [
        f"{image(root, 'DEMO_001')}: channel 0 (FLAIR) has 0 NaN and 2 infinite voxel(s)",
        f"{image(root, 'DEMO_001')}: channel 1 (T1gd) has 3 NaN and 1 infinite voxel(s)",
    ]


def test_non_integer_label_values_are_named(root: Path) -> None:
    data, affine = read(label(root, "DEMO_002"))
    data = data.astype(np.float32)
    data[0, 0, 0] = 0.5
    save_nifti(label(root, "DEMO_002"), data, affine)

    assert problems_of(root) == [f"{label(root, 'DEMO_002')}: 1 voxel(s) hold values that are not "
                                 f"whole numbers (e.g. 0.5); label maps hold integer label values"]


def test_float_labels_with_whole_values_are_fine(root: Path) -> None:
    data, affine = read(label(root, "DEMO_002"))
    save_nifti(label(root, "DEMO_002"), data.astype(np.float32), affine)

    assert problems_of(root) == []


def test_undeclared_label_values_are_named_with_their_voxel_counts(root: Path) -> None:
    data, affine = read(label(root, "DEMO_000"))
    data = data.astype(np.int16)
    data[0, 0, :4] = 7
    data[0, 1, 0] = -1
    save_nifti(label(root, "DEMO_000"), data, affine)

    assert problems_of(root) == [f"{label(root, 'DEMO_000')}: label value(s) -1 (1 voxels), "
                                 f"7 (4 voxels) not declared in dataset.json 'labels' "
                                 f"(declared: 0, 1, 2, 3)"]


# --- the ignore label (sparse annotation) -------------------------------------------------------

DEMO_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumour", "3": "enhancing tumour"}


def test_an_ignore_label_with_the_highest_value_is_accepted_in_both_label_forms(root: Path) -> None:
    data, affine = read(label(root, "DEMO_000"))
    data = data.astype(np.uint8)
    data[:4] = 4  # unannotated slices
    save_nifti(label(root, "DEMO_000"), data, affine)
    edit_meta(root, labels={**DEMO_LABELS, "4": "ignore"})
    assert problems_of(root) == []
    edit_meta(root, labels={"background": 0, "edema": 1, "non-enhancing tumour": 2, "enhancing tumour": 3,
                            "ignore": 4})  # nnU-Net v2's form
    assert problems_of(root) == []
    assert load_dataset(root).labels[4] == "ignore"


def test_an_ignore_label_below_another_value_or_in_a_region_is_named(root: Path) -> None:
    edit_meta(root, labels={**DEMO_LABELS, "2": "ignore"}, regions=None)
    meta = root / "dataset.json"
    assert problems_of(root) == [f"{meta}: 'labels': the 'ignore' label (2) must have the highest value "
                                 f"(highest declared: 3), as nnU-Net requires"]
    edit_meta(root, labels={**DEMO_LABELS, "3": "ignore"}, regions={"tumour": [1, 2, 3]})
    assert problems_of(root) == [f"{meta}: 'regions': region 'tumour' holds the 'ignore' label 3; "
                                 f"unannotated voxels belong to no region"]


def test_ignore_label_checks_on_mappings() -> None:
    from unet.io.labels import ignore_problems, ignore_value

    assert ignore_value({0: "background", 1: "a"}) is None
    assert ignore_value({"0": "background", "1": "a", "2": "ignore"}) == 2
    assert ignore_problems({0: "background", 1: "a", 2: "ignore"}) == []
    assert "background value 0" in ignore_problems({0: "ignore", 1: "a"})[0]
    assert "declare one" in ignore_problems({0: "background", 1: "ignore", 2: "ignore"})[0]


# --- all at once ------------------------------------------------------------------------------

def test_several_problems_are_reported_in_one_error_by_any_number_of_workers(root: Path) -> None:
    image(root, "DEMO_000").unlink()
    lab, affine = read(label(root, "DEMO_001"))
    lab = lab.astype(np.int16)
    lab[0, 0, 0] = 9
    save_nifti(label(root, "DEMO_001"), lab, affine + np.diag([0, 0, 0.1, 0]))
    img, affine = read(image(root, "DEMO_003"))
    img = img.astype(np.float32)
    img[0, 0, 0, 0] = np.nan
    save_nifti(image(root, "DEMO_003"), img[..., :1], affine)
    edit_meta(root, numTest=2)

    message = error_of(root)

    assert f"{root / 'dataset.json'}: 6 problem(s) with the dataset" in message
    for expected in (
            "'numTest' is 2, but 1 case(s) are listed under 'test'",
            f"{image(root, 'DEMO_000')}: listed in dataset.json but does not exist",
            f"{label(root, 'DEMO_001')}: label value(s) 9 (1 voxels) not declared",
            f"{label(root, 'DEMO_001')}: affine differs from its image's (DEMO_001.nii.gz)",
            f"{image(root, 'DEMO_003')}: 1 channel(s), dataset.json 'modality' declares 2",
            f"{image(root, 'DEMO_003')}: channel 0 (FLAIR) has 1 NaN and 0 infinite voxel(s)"):
        assert expected in message
    assert problems_of(root, workers=2) == problems_of(root, workers=1)


def test_a_long_list_shows_the_first_twenty_and_counts_the_rest(root: Path) -> None:
    ids = [f"ghost_{i:02d}" for i in range(13)]  # 26 missing files
    edit_meta(root, numTraining=None, training=[
        {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ids])

    message = error_of(root)

    assert "26 problem(s)" in message and message.rstrip().endswith("... and 6 more")
    assert message.count("does not exist") == 20


# --- the pure checks on arrays ----------------------------------------------------------------

def test_label_checks_on_arrays() -> None:
    labels = np.zeros((4, 4, 4), np.uint8)
    assert label_problems("l.nii.gz", labels, EXPECTED) == []
    assert label_problems("l.nii.gz", labels[..., None], EXPECTED) == []  # (X, Y, Z, 1) is 3D
    assert label_problems("l.nii.gz", np.zeros((4, 4, 4, 2)), EXPECTED) == [
        "l.nii.gz: shape (4, 4, 4, 2), expected a 3D label map (x, y, z)"]
    nan = np.zeros((4, 4, 4), np.float32)
    nan[0, 0, 0] = np.nan
    assert "1 voxel(s) hold values that are not whole numbers (e.g. nan)" in \
        label_problems("l.nii.gz", nan, EXPECTED)[0]


def test_grid_checks_on_arrays() -> None:
    eye = np.eye(4)
    assert grid_problems("l", (4, 4, 4), eye, Path("i.nii"), (4, 4, 4, 2), eye) == []
    assert "does not match its image's (4, 4, 5)" in \
        grid_problems("l", (4, 4, 4), eye, Path("i.nii"), (4, 4, 5, 2), eye)[0]
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    assert "affine differs" in grid_problems("l", (4, 4, 4), flipped, Path("i.nii"), (4, 4, 4),
                                             eye)[0]
