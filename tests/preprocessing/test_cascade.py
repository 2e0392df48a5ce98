"""The previous stage's segmentation on the cascade's grid (unet.preprocessing.cascade): a lowres
prediction equal to a case's raw label comes out exactly as preprocessing's `{case}_seg.npy`, for
cases stored in several voxel orders and formats, with label values that are not 0..K-1, resampled
in 3D and with a separate (nearest-neighbour) axis."""

from __future__ import annotations

import dataclasses
import shutil

import nibabel.orientations as nio
import numpy as np
import pytest

from unet.io.atomic import load_npy
from unet.io.demo import MODALITIES, synthesize_case
from unet.io.images import load_label, save_image
from unet.io.msd import load_dataset, write_dataset_json
from unet.preprocessing.cascade import (find_previous_stage, previous_stage_channels, previous_stage_indices,
                                        write_previous_stage)
from unet.preprocessing.fingerprint import compute_fingerprint
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.plan import Plan
from unet.preprocessing.planning import make_plans
from unet.preprocessing.preprocess import preprocess_case
from unet.preprocessing.resampling import separate_axis

LABEL_VALUES = (0, 1, 2, 4)
AXCODES = ("LPS", "RAS", "PSR")


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    """Three demo cases stored LPS, RAS and PSR, label 3 renamed 4."""
    root = tmp_path_factory.mktemp("cascade_raw")
    ids = []
    for i, axcodes in enumerate(AXCODES):
        image, label, affine = synthesize_case(i, seed=1)
        transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(axcodes))
        new_affine = affine @ nio.inv_ornt_aff(transform, label.shape)
        label = np.asarray(LABEL_VALUES, dtype=np.uint8)[label]
        ids.append(f"case_{i}")
        save_image(root / "imagesTr" / f"{ids[-1]}.nii.gz", nio.apply_orientation(image, transform), new_affine)
        save_image(root / "labelsTr" / f"{ids[-1]}.nii.gz", nio.apply_orientation(label, transform), new_affine,
                   dtype=np.uint8)
    write_dataset_json(root, "cascade", MODALITIES, dict(zip(LABEL_VALUES, ["background", "edema", "core", "rim"])),
                       ids, [])
    dataset = load_dataset(root)
    return dataset, compute_fingerprint(dataset, workers=1, seed=0)


def cascade_plan(fingerprint, spacing) -> Plan:
    plan = Plan.from_json(make_plans(fingerprint, {"spacing": list(spacing)}))
    return dataclasses.replace(plan, configuration="3d_cascade_fullres", previous_stage="3d_lowres")


# Every axis resampled (up and down); an anisotropic target, whose coarse axis is taken by nearest neighbour.
@pytest.mark.parametrize("spacing", [(0.9, 1.1, 1.6), (0.7, 0.7, 3.0)])
def test_a_prediction_equal_to_the_label_gives_the_preprocessed_seg(raw_dataset, spacing, tmp_path):
    dataset, fingerprint = raw_dataset
    plan = cascade_plan(fingerprint, spacing)
    geometries = [preprocess_case(case, plan, tmp_path / "preprocessed") for case in dataset.training]
    axes = {separate_axis(g.spacing, g.target_spacing) for g in geometries}
    assert axes == ({None} if spacing[2] < 3 else {2})  # both paths of the resampling are taken
    # The lowres folds' predictions: label maps in the raw geometry, spread over two folders and formats.
    folds = [tmp_path / "fold_0", tmp_path / "fold_1"]
    for k, case in enumerate(dataset.training):
        label, affine = load_label(case.label)
        save_image(folds[k % 2] / f"{case.id}{'.nii.gz' if k % 2 else '.nrrd'}", label, affine)
    ids = [case.id for case in dataset.training]

    written = write_previous_stage(folds, tmp_path / "preprocessed", ids, tmp_path / "previous", plan)

    assert written == [tmp_path / "previous" / f"{cid}.npy" for cid in ids]
    for cid in ids:
        previous = load_npy(tmp_path / "previous" / f"{cid}.npy")
        seg = load_npy(tmp_path / "preprocessed" / f"{cid}_seg.npy")
        image = load_npy(tmp_path / "preprocessed" / f"{cid}.npy")
        assert previous.dtype == np.uint8 and previous.shape == image.shape[:3]
        np.testing.assert_array_equal(previous, seg)
        assert set(np.unique(previous)) == {0, 1, 2, 3}  # label 4 is class 3


def test_the_prediction_is_reoriented_before_it_is_cropped(raw_dataset, tmp_path):
    """A prediction flipped in the file's voxel order lands elsewhere on the grid: the raw order counts."""
    dataset, fingerprint = raw_dataset
    plan = cascade_plan(fingerprint, (0.9, 1.1, 1.6))
    case = dataset.training[0]
    preprocess_case(case, plan, tmp_path)
    geometry = CaseGeometry.load(tmp_path / f"{case.id}.json")
    label, _ = load_label(case.label)
    seg = load_npy(tmp_path / f"{case.id}_seg.npy")
    np.testing.assert_array_equal(previous_stage_indices(label, geometry, plan), seg)
    assert not np.array_equal(previous_stage_indices(label[::-1].copy(), geometry, plan), seg)
    with pytest.raises(ValueError, match="raw shape"):
        previous_stage_indices(label[1:], geometry, plan)


def test_the_one_hot_channels_are_the_foreground_classes():
    indices = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)
    channels = previous_stage_channels(indices, 4)
    assert channels.dtype == np.float32 and channels.shape == (1, 1, 4, 3)
    np.testing.assert_array_equal(channels[0, 0], [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="class index 3"):
        previous_stage_channels(indices, 3)


def test_a_missing_or_doubled_prediction_names_the_case_and_the_folders(raw_dataset, tmp_path):
    dataset, _ = raw_dataset
    case = dataset.training[0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"case {case.id}: no 3d_lowres prediction .* in .*a, .*b"):
        find_previous_stage([tmp_path / "a", tmp_path / "b"], case.id, "3d_lowres")
    shutil.copy(case.label, tmp_path / "a" / f"{case.id}.nii.gz")
    assert find_previous_stage([tmp_path / "a", tmp_path / "b"], case.id) == tmp_path / "a" / f"{case.id}.nii.gz"
    shutil.copy(case.label, tmp_path / "b" / f"{case.id}.nii.gz")
    with pytest.raises(ValueError, match=f"case {case.id}: several"):
        find_previous_stage([tmp_path / "a", tmp_path / "b"], case.id)


def test_a_prediction_in_another_geometry_is_refused(raw_dataset, tmp_path):
    dataset, fingerprint = raw_dataset
    plan = cascade_plan(fingerprint, (0.9, 1.1, 1.6))
    case = dataset.training[1]
    preprocess_case(case, plan, tmp_path / "preprocessed")
    label, affine = load_label(case.label)
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    save_image(tmp_path / "lowres" / f"{case.id}.nii.gz", label, shifted)
    with pytest.raises(ValueError, match="affine differs"):
        write_previous_stage([tmp_path / "lowres"], tmp_path / "preprocessed", [case.id], tmp_path / "out", plan)
    assert not (tmp_path / "out" / f"{case.id}.npy").exists()
