import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from unet.inference.restore import (logits_to_probabilities, probabilities_to_cropped, probabilities_to_logits,
                                   restore_labels, restore_probabilities)
from unet.io.atomic import load_npy
from unet.io.images import load_label
from unet.io.orientation import Reorientation
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.preprocess import preprocess_arrays
from unet.preprocessing.resampling import resample_channels


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


def test_probabilities_in_the_raw_grid_exactly_when_no_resampling(preprocessed_demo):
    # One-hot probabilities of the preprocessed label come back as the one-hot raw label map:
    # same voxel order (the demo cases are not stored RAS), background 1 outside the crop box.
    plan = preprocessed_demo.plan
    for case in preprocessed_demo.dataset.training:
        geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
        _, seg, geometry = preprocess_arrays(case, dataclasses.replace(plan, spacing=geometry.spacing))
        assert any(hi - lo < n for (lo, hi), n in zip(geometry.crop_box, geometry.canonical_shape))
        probs = restore_probabilities(_onehot(seg, plan.num_classes), geometry)
        raw_indices = np.searchsorted(plan.label_values, _raw_label(case))
        assert probs.dtype == np.float32
        np.testing.assert_array_equal(probs, np.moveaxis(_onehot(raw_indices, plan.num_classes), -1, 0))


def test_argmax_of_restored_probabilities_is_the_restored_label_map(preprocessed_demo):
    # With resampling: arbitrary probabilities on the preprocessed grid of a resampled case.
    plan = preprocessed_demo.plan
    case = preprocessed_demo.dataset.training[2]
    geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{case.id}.json")
    logits = np.random.default_rng(0).normal(size=geometry.resampled_shape + (plan.num_classes,))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    restored = restore_probabilities(probs, geometry)
    assert restored.shape == (plan.num_classes,) + _raw_label(case).shape
    np.testing.assert_allclose(restored.sum(0), 1.0, atol=1e-5)
    assert restored.min() >= 0
    labels = restore_labels(probs, geometry, plan.label_values)
    np.testing.assert_array_equal(np.asarray(plan.label_values)[restored.argmax(0)], labels)


def _geometry(resampled_shape, cropped_shape, spacing=(1.0, 1.0, 1.0), target_spacing=(1.0, 1.0, 1.0)):
    """A case whose crop box is the whole (RAS) volume: only the resampling is left to undo."""
    return CaseGeometry(case="thin", raw_shape=tuple(cropped_shape), raw_affine=np.eye(4),
                        reorientation=Reorientation.from_affine(np.eye(4)), canonical_shape=tuple(cropped_shape),
                        spacing=spacing, crop_box=tuple((0, n) for n in cropped_shape),
                        target_spacing=target_spacing, resampled_shape=tuple(resampled_shape))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("regions", [False, True])
def test_logits_and_probabilities_are_inverses(regions):
    logits = np.random.default_rng(1).normal(scale=6.0, size=(5, 4, 3, 3)).astype(np.float32)
    probs = 1 / (1 + np.exp(-logits)) if regions else _softmax(logits)
    back = logits_to_probabilities(probabilities_to_logits(probs, regions), regions)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, probs, rtol=1e-4, atol=1e-6)
    # Certain probabilities (0 and 1 in float32) stay finite and certain.
    certain = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    assert np.isfinite(probabilities_to_logits(certain, regions)).all()
    np.testing.assert_allclose(logits_to_probabilities(probabilities_to_logits(certain, regions), regions),
                               certain, atol=1e-6)


@pytest.mark.parametrize("regions", [False, True])
def test_probabilities_are_resampled_through_their_logits(regions):
    # nnU-Net's export: the network's logits are interpolated, then the softmax (sigmoid) applied.
    rng = np.random.default_rng(2)
    geometry = _geometry((6, 5, 4), (11, 9, 4), spacing=(0.5, 0.5, 1.0))
    logits = rng.normal(scale=4.0, size=(6, 5, 4, 3)).astype(np.float32)
    probs = (1 / (1 + np.exp(-logits)) if regions else _softmax(logits)).astype(np.float32)
    expected = resample_channels(logits, (11, 9, 4), order=1)
    expected = 1 / (1 + np.exp(-expected)) if regions else _softmax(expected)
    # float32 sigmoid probabilities near 1 hold their log-odds to about 1e-4.
    np.testing.assert_allclose(probabilities_to_cropped(probs, geometry, regions), expected, atol=1e-4)

