"""unet.io.brats: a synthetic BraTS challenge folder converted to MSD layout and back."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import unet.io.brats as brats
from unet.inference.restore import restore_labels
from unet.io.atomic import load_npy
from unet.io.brats import BratsError, find_patients, ingest_brats
from unet.io.msd import load_dataset
from unet.io.images import load_image, load_label
from unet.io.nifti import save_nifti
from unet.preprocessing.fingerprint import compute_fingerprint
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.plan import Plan
from unet.preprocessing.planning import make_plans
from unet.preprocessing.preprocess import preprocess_case, values_to_indices

SHAPE = (24, 22, 18)
# BraTS files are stored with flipped x and y (LPS-like); the pipeline must undo it on the way back.
AFFINE = np.array([[-1.0, 0, 0, 120], [0, -1.0, 0, 110], [0, 0, 1.5, -20], [0, 0, 0, 1]])
SUFFIXES = ("flair", "t1", "t1ce", "t2")
# Where each patient sits (BraTS 2019 groups them under HGG/ and LGG/); validation data has no seg.
PATIENTS = {"HGG/BraTS19_A_001": True, "LGG/BraTS19_A_002": True, "BraTS19_Val_003": False}


def synthetic_patient(index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four int16 modalities (distinct value ranges, so channels are told apart) and a label
    map with the BraTS values: 2 edema around 1 necrotic core around 4 enhancing tumour."""
    rng = np.random.default_rng(index)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    centre = np.array(SHAPE) / 2 + rng.uniform(-2, 2, size=3)
    dist = np.linalg.norm((grid - centre) * [1, 1, 1.5], axis=-1)
    head = dist < 10.5
    label = np.zeros(SHAPE, np.uint8)
    label[dist < 6.0] = 2
    label[dist < 4.0] = 1
    label[dist < 2.5] = 4
    images = {}
    for k, suffix in enumerate(SUFFIXES):
        values = 1000 * (k + 1) + 50 * label.astype(np.int64) + rng.integers(0, 40, size=SHAPE)
        images[suffix] = np.where(head, values, 0).astype(np.int16)
    return images, label


def write_brats_folder(root: Path, patients: dict[str, bool] = PATIENTS) -> dict[str, tuple]:
    """The challenge's layout under `root`; returns {patient id: (images, label)}."""
    written = {}
    for index, (rel, has_seg) in enumerate(patients.items()):
        folder = root / rel
        images, label = synthetic_patient(index)
        for suffix, data in images.items():
            save_nifti(folder / f"{folder.name}_{suffix}.nii.gz", data, AFFINE)
        if has_seg:
            save_nifti(folder / f"{folder.name}_seg.nii.gz", label, AFFINE, dtype=np.uint8)
        written[folder.name] = (images, label if has_seg else None)
    return written


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("brats_source")
    return root, write_brats_folder(root)


@pytest.fixture(scope="module")
def ingested(source, tmp_path_factory) -> Path:
    return ingest_brats(source[0], tmp_path_factory.mktemp("data") / "BraTS", progress=False)


# --- layout and content -----------------------------------------------------------------------

def test_ingested_folder_loads_as_msd_dataset(ingested: Path) -> None:
    ds = load_dataset(ingested)

    assert ds.modalities == ("FLAIR", "T1", "T1ce", "T2")
    assert ds.labels == {0: "background", 1: "necrotic / non-enhancing tumour core",
                         2: "peritumoral edema", 4: "GD-enhancing tumour"}
    assert [c.id for c in ds.training] == ["BraTS19_A_001", "BraTS19_A_002"]
    assert [c.id for c in ds.test] == ["BraTS19_Val_003"]
    assert all(c.image.is_file() and c.label.is_file() for c in ds.training)
    assert ds.test[0].image == (ingested / "imagesTs" / "BraTS19_Val_003.nii.gz").resolve()
    assert ds.regions == {"whole tumour": (1, 2, 4), "tumour core": (1, 4),
                          "enhancing tumour": (4,)}
    assert sorted(p.name for p in ingested.parent.iterdir()) == ["BraTS"]  # no staging left


def test_dataset_json_declares_regions_and_the_label_mapping(ingested: Path, source) -> None:
    meta = json.loads((ingested / "dataset.json").read_text())

    assert meta["regions"] == {"whole tumour": [1, 2, 4], "tumour core": [1, 4],
                               "enhancing tumour": [4]}
    mapping = meta["label_mapping"]["value_to_class_index"]
    assert mapping == {"0": 0, "1": 1, "2": 2, "4": 3}
    # The recorded mapping is the one the pipeline applies.
    values = np.array([int(v) for v in mapping])
    np.testing.assert_array_equal(values_to_indices(values, load_dataset(ingested).label_values),
                                  list(mapping.values()))
    assert meta["ingest"] == {"format": "brats", "source": str(source[0].resolve())}
    assert meta["numTraining"] == 2 and meta["numTest"] == 1


def test_channels_in_documented_order_and_label_values_kept(ingested: Path, source) -> None:
    written = source[1]
    for case_id, folder in (("BraTS19_A_002", "imagesTr"), ("BraTS19_Val_003", "imagesTs")):
        images, label = written[case_id]
        image, affine = load_image(ingested / folder / f"{case_id}.nii.gz")

        assert image.shape == SHAPE + (4,)
        for channel, suffix in enumerate(("flair", "t1", "t1ce", "t2")):
            np.testing.assert_array_equal(image[..., channel], images[suffix])
        np.testing.assert_allclose(affine, AFFINE)
    stored = nib.load(str(ingested / "imagesTr" / "BraTS19_A_002.nii.gz"))
    assert stored.get_data_dtype() == np.int16  # the challenge's integer type is kept

    label, affine = load_label(ingested / "labelsTr" / "BraTS19_A_002.nii.gz")
    np.testing.assert_array_equal(label, written["BraTS19_A_002"][1])
    assert set(np.unique(label).tolist()) == {0, 1, 2, 4}
    assert not (ingested / "labelsTr" / "BraTS19_Val_003.nii.gz").exists()


# --- label values round-trip through preprocessing and restoring ------------------------------

@pytest.fixture(scope="module")
def fingerprint(ingested: Path) -> dict:
    return compute_fingerprint(load_dataset(ingested), workers=1)


def _preprocess_and_restore(ingested: Path, fingerprint: dict, overrides: dict, out: Path):
    ds = load_dataset(ingested)
    plan = Plan.from_json(make_plans(fingerprint, overrides))
    case = ds.training[0]
    geometry = preprocess_case(case, plan, out)
    seg = load_npy(out / f"{case.id}_seg.npy")
    probs = np.eye(plan.num_classes, dtype=np.float32)[seg]  # the seg as one-hot probabilities
    restored = restore_labels(probs, CaseGeometry.load(out / f"{case.id}.json"), plan.label_values)
    original, _ = load_label(case.label)
    return plan, geometry, seg, restored, original


def test_label_values_round_trip_at_the_case_spacing(ingested, fingerprint, tmp_path) -> None:
    plan, geometry, seg, restored, original = _preprocess_and_restore(
        ingested, fingerprint, {"patch_size": [16, 16, 16]}, tmp_path)

    assert plan.label_values == (0, 1, 2, 4)
    assert tuple(plan.spacing) == tuple(geometry.spacing)  # no resampling: an exact round trip
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}  # class indices inside the pipeline
    assert restored.shape == original.shape
    np.testing.assert_array_equal(restored, original)  # 0, 1, 2, 4 again, voxel for voxel


def test_label_values_survive_resampling(ingested, fingerprint, tmp_path) -> None:
    plan, geometry, _, restored, original = _preprocess_and_restore(
        ingested, fingerprint, {"spacing": [1.7, 1.3, 1.1], "patch_size": [16, 16, 16]}, tmp_path)

    assert tuple(geometry.resampled_shape) != tuple(geometry.cropped_shape)
    assert set(np.unique(restored).tolist()) == {0, 1, 2, 4}
    assert restored.shape == original.shape
    assert (restored == original).mean() > 0.9


# --- errors name the folder and the file ------------------------------------------------------

def _ingest_fails(source: Path, tmp_path: Path) -> str:
    dest = tmp_path / "data" / "BraTS"
    with pytest.raises(BratsError) as excinfo:
        ingest_brats(source, dest, progress=False)
    assert not dest.exists()
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
    return str(excinfo.value)


def test_missing_modality_names_folder_and_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_brats_folder(src)
    (src / "LGG" / "BraTS19_A_002" / "BraTS19_A_002_t1ce.nii.gz").unlink()

    message = _ingest_fails(src, tmp_path)

    assert str(src / "LGG" / "BraTS19_A_002") in message
    assert "BraTS19_A_002_t1ce.nii.gz" in message


def test_shape_mismatch_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_brats_folder(src)
    bad = src / "HGG" / "BraTS19_A_001" / "BraTS19_A_001_t2.nii.gz"
    save_nifti(bad, np.zeros((24, 22, 17), np.int16), AFFINE)

    message = _ingest_fails(src, tmp_path)

    assert str(bad) in message and "(24, 22, 17)" in message and "shape" in message


def test_affine_mismatch_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_brats_folder(src)
    bad = src / "HGG" / "BraTS19_A_001" / "BraTS19_A_001_seg.nii.gz"
    shifted = AFFINE.copy()
    shifted[0, 3] += 5
    save_nifti(bad, synthetic_patient(0)[1], shifted, dtype=np.uint8)

    message = _ingest_fails(src, tmp_path)

    assert str(bad) in message and "affine" in message


def test_unknown_label_value_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_brats_folder(src)
    bad = src / "LGG" / "BraTS19_A_002" / "BraTS19_A_002_seg.nii.gz"
    label = synthetic_patient(1)[1]
    label[label == 4] = 3  # an MSD-style value in a BraTS folder
    save_nifti(bad, label, AFFINE, dtype=np.uint8)

    message = _ingest_fails(src, tmp_path)

    assert str(bad) in message and "[3]" in message


def test_unrecognised_file_names_the_file(tmp_path: Path) -> None:
    # BraTS 2020's patient 355 ships its segmentation as "W39_1998.09.19_Segm.nii".
    src = tmp_path / "src"
    write_brats_folder(src, {"BraTS20_Training_355": False})
    odd = src / "BraTS20_Training_355" / "W39_1998.09.19_Segm.nii"
    save_nifti(odd, synthetic_patient(0)[1], AFFINE, dtype=np.uint8)

    message = _ingest_fails(src, tmp_path)

    assert str(odd) in message and "BraTS20_Training_355_seg.nii.gz" in message


def test_empty_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()

    assert str(tmp_path / "src") in _ingest_fails(tmp_path / "src", tmp_path)


def test_find_patients_accepts_uncompressed_files(tmp_path: Path) -> None:
    folder = tmp_path / "P1"
    for suffix in SUFFIXES:
        save_nifti(folder / f"P1_{suffix}.nii", np.ones(SHAPE, np.int16), AFFINE)
    (folder / "._P1_seg.nii.gz").write_bytes(b"macOS resource fork")  # ignored

    [patient] = find_patients(tmp_path)

    assert patient.id == "P1" and patient.seg is None
    assert [p.name for p in patient.images] == ["P1_flair.nii", "P1_t1.nii", "P1_t1ce.nii",
                                                "P1_t2.nii"]


# --- atomic writes ----------------------------------------------------------------------------

def test_interrupted_ingest_leaves_the_previous_dataset(source, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "BraTS"
    ingest_brats(source[0], dest, progress=False)
    before = (dest / "dataset.json").read_bytes()
    convert = brats.convert_patient
    calls = []

    def convert_then_fail(patient, root):
        calls.append(patient.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return convert(patient, root)

    monkeypatch.setattr(brats, "convert_patient", convert_then_fail)
    with pytest.raises(KeyboardInterrupt):
        ingest_brats(source[0], dest, progress=False)

    assert (dest / "dataset.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BraTS"]  # staging removed


def test_refuses_to_replace_a_folder_it_did_not_write(source, tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "dataset.json").write_text('{"name": "my own data"}')

    with pytest.raises(BratsError, match="not written by an ingest") as excinfo:
        ingest_brats(source[0], dest, progress=False)

    assert str(dest) in str(excinfo.value)
    assert (dest / "dataset.json").read_text() == '{"name": "my own data"}'


def test_workers_write_the_same_dataset(source, ingested: Path, tmp_path: Path) -> None:
    dest = ingest_brats(source[0], tmp_path / "BraTS", workers=2, progress=False)

    assert (dest / "dataset.json").read_text() == (ingested / "dataset.json").read_text()
    for rel in ("imagesTr/BraTS19_A_001.nii.gz", "labelsTr/BraTS19_A_001.nii.gz",
                "imagesTs/BraTS19_Val_003.nii.gz"):
        np.testing.assert_array_equal(np.asarray(nib.load(str(dest / rel)).dataobj),
                                      np.asarray(nib.load(str(ingested / rel)).dataobj))
