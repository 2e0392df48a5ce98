import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from unet.inference.restore import restore_labels
from unet.io.atomic import load_npy
from unet.io.nifti import load_label
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.preprocess import preprocess_arrays


def _onehot(seg, num_classes):
    return np.eye(num_classes, dtype=np.float32)[seg]


def _raw_label(case):
    label, affine = load_label(case.label)
    assert "".join(nib.aff2axcodes(affine)) != "RAS"  # reorientation has work to do
    return label


def test_demo_cases_are_not_stored_in_ras(preprocessed_demo):
    codes = {"".join(nib.aff2axcodes(nib.load(str(c.label)).affine)) for c in preprocessed_demo.dataset.training}
    assert "RAS" not in codes and len(codes) > 1


def test_exact_when_the_plan_spacing_is_the_case_spacing(preprocessed_demo):
    plan = preprocessed_demo.plan
    for case in preprocessed_demo.dataset.training:
        geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
        own = dataclasses.replace(plan, spacing=geometry.spacing)
        _, seg, geometry = preprocess_arrays(case, own)
        assert geometry.resampled_shape == geometry.cropped_shape
        restored = restore_labels(_onehot(seg, plan.num_classes), geometry, plan.label_values)
        raw = _raw_label(case)
        assert restored.shape == raw.shape
        np.testing.assert_array_equal(restored, raw)


def test_label_values_are_mapped(preprocessed_demo):
    plan = preprocessed_demo.plan
    case = preprocessed_demo.dataset.training[0]
    geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
    _, seg, geometry = preprocess_arrays(case, dataclasses.replace(plan, spacing=geometry.spacing))
    raw = _raw_label(case)
    for values, dtype in [((0, 10, 20, 40), np.uint8), ((0, 7, 300, 1000), np.int16)]:
        restored = restore_labels(_onehot(seg, plan.num_classes), geometry, values)
        assert restored.dtype == dtype
        np.testing.assert_array_equal(restored, np.asarray(values)[raw])


def test_close_after_resampling(preprocessed_demo):
    # Going to a coarser grid loses detail (the thin enhancing rim most), so not exact; but no
    # structure may move: a misaligned grid or a wrong flip would shift its centre of mass.
    plan = preprocessed_demo.plan
    for case in preprocessed_demo.dataset.training:
        seg = load_npy(preprocessed_demo.preprocessed / f"{case.id}_seg.npy")
        geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
        assert all(r != c for r, c in zip(geometry.resampled_shape, geometry.cropped_shape))
        restored = restore_labels(_onehot(seg, plan.num_classes), geometry, plan.label_values)
        raw = _raw_label(case)
        assert restored.shape == raw.shape
        for value in plan.label_values[1:]:
            ref, pred = raw == value, restored == value
            dice = 2 * np.sum(ref & pred) / (ref.sum() + pred.sum())
            assert dice >= 0.95, (case.id, value, dice)
            shift = np.subtract(ndimage.center_of_mass(pred), ndimage.center_of_mass(ref))
            assert np.abs(shift).max() < 0.5, (case.id, value, shift)


def test_shape_mismatch_names_the_case(preprocessed_demo):
    plan = preprocessed_demo.plan
    case = preprocessed_demo.dataset.training[1]
    geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
    wrong = np.zeros(tuple(n + 1 for n in geometry.resampled_shape) + (plan.num_classes,), np.float32)
    with pytest.raises(ValueError, match=case.id):
        restore_labels(wrong, geometry, plan.label_values)
