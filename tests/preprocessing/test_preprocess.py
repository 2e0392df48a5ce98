import dataclasses
import sys

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from unet.io.atomic import load_npy
from unet.io.demo import MODALITIES, synthesize_case
from unet.io.msd import Case, load_dataset, write_dataset_json
from unet.io.images import ImageReadError, load_label
from unet.io.nifti import save_nifti
from unet.preprocessing.cropping import paste
from unet.preprocessing.fingerprint import compute_fingerprint
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.loading import load_case
from unet.preprocessing.locations import case_seed, foreground_locations
from unet.preprocessing.plan import Plan
from unet.preprocessing.planning import make_plans
from unet.io.atomic import write_json
from unet.preprocessing.preprocess import preprocess_arrays, preprocess_case, preprocess_dataset_case, \
    values_to_indices
from unet.preprocessing.resampling import resample_labels


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def restore_labels(seg, geometry, plan):
    """Preprocessed class indices -> raw voxel grid and dataset label values."""
    back = resample_labels(seg, geometry.cropped_shape, plan.num_classes)
    canonical = paste(back, geometry.crop_box, geometry.canonical_shape, fill=0)
    raw = geometry.reorientation.invert(canonical)
    return np.asarray(plan.label_values)[raw]


@pytest.fixture(scope="module")
def demo_plan(demo_fingerprint):
    return Plan.from_json(make_plans(demo_fingerprint))


def write_reoriented_dataset(root, axcodes, label_values=(0, 1, 2, 4), indices=(0, 1), seed=0):
    """Demo cases stored in `axcodes` voxel order, label 3 renamed to label_values[3]."""
    ids = []
    for i in indices:
        image, label, affine = synthesize_case(i, seed)
        transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(axcodes))
        new_affine = affine @ nio.inv_ornt_aff(transform, label.shape)
        label = np.asarray(label_values, dtype=np.uint8)[label]
        cid = f"case_{i}"
        save_nifti(root / "imagesTr" / f"{cid}.nii.gz", nio.apply_orientation(image, transform), new_affine)
        save_nifti(root / "labelsTr" / f"{cid}.nii.gz", nio.apply_orientation(label, transform),
                   new_affine, dtype=np.uint8)
        ids.append(cid)
    labels = dict(zip(label_values, ["background", "edema", "core", "rim"]))
    write_dataset_json(root, "reoriented", MODALITIES, labels, ids, [])
    return load_dataset(root)


# --- loading ----------------------------------------------------------------------------------

def test_load_case_is_canonical(demo_dataset):
    case = demo_dataset.training[0]
    loaded = load_case(case, n_channels=2)
    canon = nib.as_closest_canonical(nib.load(str(case.image)))
    np.testing.assert_array_equal(loaded.image, np.asarray(canon.dataobj, dtype=np.float32))
    canon_label = nib.as_closest_canonical(nib.load(str(case.label)))
    np.testing.assert_array_equal(loaded.label, np.asarray(canon_label.dataobj))
    assert loaded.spacing == pytest.approx(canon.header.get_zooms()[:3])
    assert loaded.raw_shape == nib.load(str(case.image)).shape[:3]


# --- outputs ----------------------------------------------------------------------------------

def test_preprocess_demo_case_outputs(demo_dataset, demo_plan, tmp_path):
    case = demo_dataset.training[1]
    geometry = preprocess_case(case, demo_plan, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{case.id}.json", f"{case.id}.npy", f"{case.id}_fg.npy", f"{case.id}_seg.npy"]
    image = load_npy(tmp_path / f"{case.id}.npy")
    seg = load_npy(tmp_path / f"{case.id}_seg.npy")
    fg = load_npy(tmp_path / f"{case.id}_fg.npy")
    np.testing.assert_array_equal(fg, foreground_locations(seg, demo_plan.num_classes, case_seed(case.id)))
    assert fg.dtype == np.int32 and set(fg[:, 0].tolist()) == {1, 2, 3}
    np.testing.assert_array_equal(seg[fg[:, 1], fg[:, 2], fg[:, 3]], fg[:, 0])
    assert image.dtype == np.float32 and image.shape == tuple(geometry.resampled_shape) + (2,)
    assert seg.dtype == np.uint8 and seg.shape == tuple(geometry.resampled_shape)
    assert seg.max() < demo_plan.num_classes
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}
    assert np.isfinite(image).all()
    # Normalized: z-scored inside the head (approximately, after resampling), zero-ish outside.
    head = seg > 0
    assert abs(image[..., 0][head].mean()) < 3 and image[..., 0].std() < 3

    saved = CaseGeometry.load(tmp_path / f"{case.id}.json")
    assert saved.to_json() == geometry.to_json()
    assert saved.target_spacing == demo_plan.spacing
    assert saved.case == case.id
    raw = nib.load(str(case.image))
    np.testing.assert_allclose(saved.raw_affine, raw.affine, atol=1e-5)
    assert saved.raw_shape == raw.shape[:3]
    # Resampled shape follows from the cropped shape and the spacings.
    for n, s, t, r in zip(saved.cropped_shape, saved.spacing, saved.target_spacing,
                          saved.resampled_shape):
        assert r == max(1, round(n * s / t))


def test_test_case_has_no_seg(demo_dataset, demo_plan, tmp_path):
    case = demo_dataset.test[0]
    preprocess_case(case, demo_plan, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{case.id}.json", f"{case.id}.npy"]


# --- geometry round trip ----------------------------------------------------------------------

def test_geometry_round_trip_with_resampling(demo_dataset, demo_plan, tmp_path):
    case = demo_dataset.training[1]  # 1 mm isotropic; the plan's target is coarser along z
    geometry = preprocess_case(case, demo_plan, tmp_path)
    assert geometry.resampled_shape != geometry.cropped_shape
    seg = load_npy(tmp_path / f"{case.id}_seg.npy")
    restored = restore_labels(seg, geometry, demo_plan)
    raw, _ = load_label(case.label)
    assert restored.shape == raw.shape
    for value in demo_plan.label_values:
        assert dice(restored == value, raw == value) >= 0.9, value


@pytest.mark.parametrize("axcodes", ["PSR", "ASL", "LPI"])
def test_geometry_round_trip_exact_at_target_spacing(tmp_path, axcodes):
    ds = write_reoriented_dataset(tmp_path / "raw", axcodes)
    fingerprint = compute_fingerprint(ds)
    case_spacing = fingerprint["cases"][0]["spacing"]
    plan = Plan.from_json(make_plans(fingerprint, {"spacing": case_spacing}))
    assert plan.label_values == (0, 1, 2, 4)

    case = ds.training[0]
    out = tmp_path / "pre"
    geometry = preprocess_case(case, plan, out)
    assert geometry.resampled_shape == geometry.cropped_shape
    assert nib.aff2axcodes(geometry.raw_affine) == tuple(axcodes)
    seg = load_npy(out / f"{case.id}_seg.npy")
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}  # indices, not label values
    restored = restore_labels(seg, CaseGeometry.load(out / f"{case.id}.json"), plan)
    raw, _ = load_label(case.label)
    assert set(np.unique(raw).tolist()) == {0, 1, 2, 4}
    np.testing.assert_array_equal(restored, raw)


# --- the ignore label -------------------------------------------------------------------------

def test_the_ignore_label_stays_in_the_seg_and_out_of_the_foreground(tmp_path, demo_fingerprint):
    fingerprint = {**demo_fingerprint, "labels": {**demo_fingerprint["labels"], "9": "ignore"}}
    plan = Plan.from_json(make_plans(fingerprint))
    label = np.zeros((12, 12, 12), np.uint8)
    label[4:8, 4:8, 4:8] = 1
    label[2:10, 2:10, 8:10] = 9  # unannotated slices (inside the non-zero box, which is kept)
    case = small_case(tmp_path, label=label, affine=np.eye(4))
    plan = dataclasses.replace(plan, spacing=(1.0, 1.0, 1.0))  # no resampling: exact indices
    image, seg, _ = preprocess_arrays(case, plan)
    assert plan.ignore_index == 4 == plan.num_classes
    assert set(np.unique(seg).tolist()) == {0, 1, 4}
    assert (seg == 4).sum() == (label == 9).sum()
    preprocess_case(case, plan, tmp_path / "out")
    fg = load_npy(tmp_path / "out" / "bad_fg.npy")
    assert set(fg[:, 0].tolist()) == {1} and len(fg) == (label == 1).sum()
    # Resampled, the ignore label is one more class of the label resampling, kept as such.
    resampled = preprocess_arrays(case, dataclasses.replace(plan, spacing=(1.0, 1.0, 0.5)))[1]
    assert set(np.unique(resampled).tolist()) == {0, 1, 4}


# --- failures ---------------------------------------------------------------------------------

def small_case(tmp_path, image=None, label=None, affine=None, label_affine=None):
    rng = np.random.default_rng(0)
    if image is None:
        image = np.zeros((12, 12, 12, 2), np.float32)
        image[2:10, 2:10, 2:10] = rng.uniform(50, 100, size=(8, 8, 8, 2))
    if label is None:
        label = np.zeros(image.shape[:3], np.uint8)
        label[4:8, 4:8, 4:8] = 1
        label[5:7, 5:7, 5:7] = 2
        label[6, 6, 6] = 3
    affine = np.diag([1.0, 1.0, 2.2, 1.0]) if affine is None else affine
    img_path, lab_path = tmp_path / "imagesTr" / "bad.nii.gz", tmp_path / "labelsTr" / "bad.nii.gz"
    save_nifti(img_path, image, affine)
    save_nifti(lab_path, label, affine if label_affine is None else label_affine, dtype=np.uint8)
    return Case("bad", img_path, lab_path)


def assert_nothing_written(out):
    assert not out.exists() or list(out.iterdir()) == []


def test_small_valid_case_succeeds(tmp_path, demo_plan):
    # The fixture used by the failure tests is valid when left alone.
    preprocess_case(small_case(tmp_path), demo_plan, tmp_path / "out")
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_label_shape_mismatch_names_label_file(tmp_path, demo_plan):
    case = small_case(tmp_path, label=np.zeros((12, 12, 11), np.uint8))
    with pytest.raises(ImageReadError) as err:
        preprocess_case(case, demo_plan, tmp_path / "out")
    assert str(case.label) in str(err.value)
    assert_nothing_written(tmp_path / "out")


def test_label_affine_mismatch_names_label_file(tmp_path, demo_plan):
    case = small_case(tmp_path, label_affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ImageReadError, match="affine") as err:
        preprocess_case(case, demo_plan, tmp_path / "out")
    assert str(case.label) in str(err.value)
    assert_nothing_written(tmp_path / "out")


def test_nan_voxel_is_an_error(tmp_path, demo_plan):
    image = np.zeros((12, 12, 12, 2), np.float32)
    image[2:10, 2:10, 2:10] = 70.0
    image[5, 5, 5, 1] = np.nan
    case = small_case(tmp_path, image=image)
    with pytest.raises(ImageReadError, match="NaN") as err:
        preprocess_case(case, demo_plan, tmp_path / "out")
    assert str(case.image) in str(err.value)
    assert_nothing_written(tmp_path / "out")


def test_undeclared_label_value_names_the_file(tmp_path, demo_plan):
    label = np.zeros((12, 12, 12), np.uint8)
    label[4:8, 4:8, 4:8] = 5
    case = small_case(tmp_path, label=label)
    with pytest.raises(ValueError, match=r"\[5\]") as err:
        preprocess_case(case, demo_plan, tmp_path / "out")
    assert str(case.label) in str(err.value)
    assert_nothing_written(tmp_path / "out")


def test_channel_count_mismatch_names_the_image(tmp_path, demo_plan):
    image = np.zeros((12, 12, 12, 3), np.float32)
    image[2:10, 2:10, 2:10] = 1.0
    case = small_case(tmp_path, image=image)
    with pytest.raises(ImageReadError, match="3 channels") as err:
        preprocess_case(case, demo_plan, tmp_path / "out")
    assert str(case.image) in str(err.value)
    assert_nothing_written(tmp_path / "out")


def test_values_to_indices():
    label = np.array([[[0, 4], [2, 1]]])
    np.testing.assert_array_equal(values_to_indices(label, (0, 1, 2, 4)), [[[0, 3], [2, 1]]])
    with pytest.raises(ValueError, match=r"seg.nii.gz.*\[3\]"):
        values_to_indices(np.array([0, 3]), (0, 1, 2, 4), "seg.nii.gz")


def test_failed_write_leaves_no_file_and_names_the_case(tmp_path, demo_plan):
    case = small_case(tmp_path)
    out = tmp_path / "out"
    (out / "bad_fg.npy").mkdir(parents=True)  # a folder in the way: the third file cannot be written
    with pytest.raises(OSError) as err:
        preprocess_case(case, demo_plan, out)
    if sys.version_info >= (3, 11):  # exception notes
        assert any("'bad'" in note for note in err.value.__notes__)
    assert sorted(p.name for p in out.iterdir()) == ["bad_fg.npy"]  # image and seg removed again


# --- separate z -------------------------------------------------------------------------------

def test_anisotropic_case_resamples_z_by_nearest_images_and_labels(tmp_path, demo_plan):
    # A 0.7 x 0.7 x 5 mm case to 1 mm: in-plane splines / per-label linear, slices repeated along z.
    image = np.zeros((20, 20, 6, 2), np.float32)
    label = np.zeros((20, 20, 6), np.uint8)
    for z in range(6):
        image[2:18, 2:18, z] = 100.0 + 10.0 * z   # one level per slice, both channels
        label[5:15, 5:15, z] = z % 3 + 1
    case = small_case(tmp_path, image=image, label=label, affine=np.diag([0.7, 0.7, 5.0, 1.0]))
    plan = dataclasses.replace(demo_plan, spacing=(1.0, 1.0, 1.0))
    geometry = preprocess_case(case, plan, tmp_path / "out")
    assert geometry.cropped_shape == (16, 16, 6) and geometry.resampled_shape == (11, 11, 30)
    pre = load_npy(tmp_path / "out" / "bad.npy")
    seg = load_npy(tmp_path / "out" / "bad_seg.npy")
    # Normalization is affine per channel, so input slice z has one normalized level; every output
    # slice holds exactly one of them (no blending across the 5 mm slices), each 5 times.
    levels = (np.arange(6) * 10.0 - 25.0) / np.std(np.arange(6) * 10.0)
    centre = pre[3:8, 3:8, :, 0]
    assert np.ptp(centre, axis=(0, 1)).max() < 1e-4
    picked = np.abs(centre[0, 0, :, None] - levels[None, :]).argmin(axis=1)
    np.testing.assert_allclose(centre[0, 0], levels[picked], atol=1e-4)
    np.testing.assert_array_equal(picked, np.repeat(np.arange(6), 5))
    for z in range(30):
        assert set(np.unique(seg[..., z]).tolist()) == {0, picked[z] % 3 + 1}


def test_outside_the_mask_stays_exactly_zero_after_resampling(tmp_path):
    # A bright ball in zeros, resampled with cubic splines: the ringing outside the ball is set back
    # to 0 when the plan z-scores inside the non-zero mask, so prediction can find the outside.
    import nibabel as nib

    from unet.preprocessing.normalization import ChannelNormalization

    grid = np.indices((24, 24, 12)).astype(np.float32)
    ball = ((grid[0] - 12) ** 2 + (grid[1] - 12) ** 2 + ((grid[2] - 6) * 2) ** 2) < 49
    image = np.zeros((30, 30, 16), np.float32)
    image[3:27, 3:27, 2:14] = np.where(ball, 100 + 10 * np.sin(grid[0]), 0)
    path = tmp_path / "ball.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    common = dict(dataset="t", modalities=("MR",), labels={0: "background", 1: "x"}, spacing=(1.0, 1.0, 1.0),
                  patch_size=(16, 16, 16), batch_size=2, filters=(4, 8), strides=((1, 1, 1), (2, 2, 2)),
                  kernels=((3, 3, 3), (3, 3, 3)))
    case = Case(id="ball", image=path, label=None)
    masked, _, _ = preprocess_arrays(case, Plan(**common, normalization=(ChannelNormalization("zscore", use_mask=True),)))
    plain, _, _ = preprocess_arrays(case, Plan(**common, normalization=(ChannelNormalization("zscore"),)))
    assert masked.shape == plain.shape and masked.shape[2] > masked.shape[0]  # z resampled 2 mm -> 1 mm
    zeros = masked[..., 0] == 0
    assert 0.2 < zeros.mean() < 0.9 and np.abs(masked[~zeros]).min() > 0  # outside exactly 0, inside not
    assert not np.any(plain[..., 0] == 0)  # without the mask, nothing is zeroed


def test_the_rule_preprocesses_the_named_case_of_the_dataset(demo_root, demo_plan, tmp_path, capsys):
    write_json(tmp_path / "plans.json", demo_plan.to_json())
    geometry = preprocess_dataset_case(demo_root, "DEMO_002", tmp_path / "plans.json", tmp_path / "out")
    assert geometry.case == "DEMO_002" and geometry.target_spacing == demo_plan.spacing
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "DEMO_002.json", "DEMO_002.npy", "DEMO_002_fg.npy", "DEMO_002_seg.npy"]
    assert capsys.readouterr().out.startswith(f"DEMO_002: crop {geometry.crop_box}, ")
