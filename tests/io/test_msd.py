import json

import pytest

from unet.io.demo import LABELS, MODALITIES, generate_demo
from unet.io.msd import DatasetError, case_id, load_dataset


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), n_train=3, n_test=2, seed=0)


def write_meta(root, **meta):
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_load_demo_dataset(demo_root):
    ds = load_dataset(demo_root)
    assert ds.name == "demo"
    assert ds.modalities == tuple(MODALITIES)
    assert ds.labels == LABELS
    assert ds.label_values == (0, 1, 2, 3)
    assert [c.id for c in ds.training] == ["DEMO_000", "DEMO_001", "DEMO_002"]
    assert [c.id for c in ds.test] == ["DEMO_003", "DEMO_004"]
    for case in ds.training:
        assert case.image == (demo_root / "imagesTr" / f"{case.id}.nii.gz").resolve()
        assert case.label == (demo_root / "labelsTr" / f"{case.id}.nii.gz").resolve()
        assert case.image.is_file() and case.label.is_file()
    for case in ds.test:
        assert case.label is None
        assert case.image == (demo_root / "imagesTs" / f"{case.id}.nii.gz").resolve()
    assert ds.case("DEMO_004").id == "DEMO_004"
    with pytest.raises(KeyError, match="DEMO_999"):
        ds.case("DEMO_999")


def test_cases_are_sorted_and_modalities_ordered_by_index(tmp_path):
    root = write_meta(
        tmp_path / "ds",
        modality={"1": "T1", "0": "FLAIR", "10": "extra", "2": "T2"},
        labels={"0": "background", "1": "tumour"},
        training=[{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                  for c in ("case_b", "case_c", "case_a")],
        test=["./imagesTs/z.nii.gz", "./imagesTs/y.nii"],
    )
    ds = load_dataset(root)
    assert [c.id for c in ds.training] == ["case_a", "case_b", "case_c"]
    assert [c.id for c in ds.test] == ["y", "z"]
    # Ordered by the integer channel index, not as strings ("10" after "2").
    assert ds.modalities == ("FLAIR", "T1", "T2", "extra")
    assert ds.name == "ds"  # no "name": the folder's name


def test_missing_dataset_json_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        load_dataset(tmp_path)


def test_missing_labels_key_names_the_file_and_key(tmp_path):
    root = write_meta(tmp_path / "ds", modality={"0": "CT"}, training=[])
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert str(root / "dataset.json") in str(err.value)
    assert "'labels'" in str(err.value)


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="dataset.json"):
        load_dataset(tmp_path)


def test_missing_background_is_an_error(tmp_path):
    root = write_meta(tmp_path / "ds", modality={"0": "CT"}, labels={"1": "liver"}, training=[])
    with pytest.raises(DatasetError, match="background"):
        load_dataset(root)


def test_nnunet_v2_labels_and_channel_names(tmp_path):
    root = write_meta(
        tmp_path / "ds", name="v2",
        channel_names={"0": "T2", "1": "ADC"},
        labels={"background": 0, "peripheral zone": 1, "transition zone": 2},
        training=[{"image": "./imagesTr/p1.nii.gz", "label": "./labelsTr/p1.nii.gz"}],
    )
    ds = load_dataset(root)
    assert ds.modalities == ("T2", "ADC")
    assert ds.labels == {0: "background", 1: "peripheral zone", 2: "transition zone"}
    assert ds.label_values == (0, 1, 2)
    assert ds.test == ()


def test_msd_labels_with_gaps(tmp_path):
    root = write_meta(tmp_path / "ds", modality={"0": "MRI"},
                      labels={"0": "background", "4": "enhancing", "1": "necrotic", "2": "edema"},
                      training=[])
    ds = load_dataset(root)
    assert ds.labels == {0: "background", 1: "necrotic", 2: "edema", 4: "enhancing"}
    assert ds.label_values == (0, 1, 2, 4)


def test_case_id_strips_nifti_extensions():
    assert case_id("/a/b/BRATS_001.nii.gz") == "BRATS_001"
    assert case_id("x/la_003.nii") == "la_003"
    assert case_id("weird.name.nii.gz") == "weird.name"


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".mhd"])
def test_file_ending_says_the_format(tmp_path, ending):
    root = generate_demo(tmp_path / "ds", n_train=2, n_test=1, file_ending=ending)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["file_ending"] == ending
    ds = load_dataset(root)
    assert ds.file_ending == ending
    assert [c.id for c in ds.training + ds.test] == ["DEMO_000", "DEMO_001", "DEMO_002"]
    assert all(c.image.name == f"{c.id}{ending}" and c.image.is_file() for c in ds.training + ds.test)
    assert load_dataset(generate_demo(tmp_path / "nifti", n_train=1, n_test=0)).file_ending == ".nii.gz"


def test_listed_files_must_have_the_declared_ending(tmp_path):
    training = [{"image": "./imagesTr/a.nrrd", "label": "./labelsTr/a.nrrd"},
                {"image": "./imagesTr/b.mha", "label": "./labelsTr/b.nrrd"}]
    common = {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ"}}
    root = write_meta(tmp_path / "declared", **common, file_ending=".nrrd", training=training)
    with pytest.raises(DatasetError, match=r"1 problem\(s\)") as error:
        load_dataset(root)
    assert "b.mha: listed, but 'file_ending' is '.nrrd'" in str(error.value)
    root = write_meta(tmp_path / "undeclared", **common, training=training[:1])
    with pytest.raises(DatasetError, match='a.nrrd: not a NIfTI file; .* "file_ending": ".nrrd"'):
        load_dataset(root)
    root = write_meta(tmp_path / "unknown", **common, file_ending=".png", training=training[:1])
    with pytest.raises(DatasetError, match=r"'file_ending' is '.png'; supported: .nii.gz, .nii, .nrrd"):
        load_dataset(root)


def test_nnunet_v2_raw_layout_is_named_as_unsupported(tmp_path):
    root = write_meta(tmp_path / "v2", channel_names={"0": "CT"}, labels={"background": 0, "organ": 1},
                      numTraining=1, file_ending=".nrrd")
    with pytest.raises(DatasetError, match="required key 'training' is missing") as error:
        load_dataset(root)
    assert "nnU-Net v2's raw layout" in str(error.value)
