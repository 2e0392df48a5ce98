import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from unet.bench.compare import AxisMapping, compare_case, expected_mapping, find_mapping, pearson
from unet.bench.nnunet_preprocess import to_nnunet_raw
from unet.bench.preprocess import build_report, format_report
from unet.bench.synthetic import synthesize_case
from unet.io.msd import write_dataset_json
from unet.io.nifti import save_nifti
from unet.io.orientation import Reorientation

MODALITIES = ["FLAIR", "T1w", "T1gd", "T2w"]
LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}


def _smooth(shape, seed=0):
    """Random but spatially varied (no symmetry a wrong flip could match)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return (rng.standard_normal(shape) + sum((i + 1) * g ** (i + 1) / n for i, (g, n) in
                                             enumerate(zip(grids, shape)))).astype(np.float32)


def _lps_affine(spacing=(1.0, 1.1, 1.2)):
    return np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])


def test_to_nnunet_raw_writes_one_file_per_channel_and_a_v2_dataset_json(tmp_path):
    msd = tmp_path / "msd" / "Tiny"
    rng = np.random.default_rng(0)
    images = {}
    for cid in ("A_000", "A_001"):
        images[cid] = rng.integers(0, 500, size=(6, 5, 4, 4)).astype(np.int16)
        save_nifti(msd / "imagesTr" / f"{cid}.nii.gz", images[cid], _lps_affine())
        save_nifti(msd / "labelsTr" / f"{cid}.nii.gz", rng.integers(0, 4, (6, 5, 4)).astype(np.uint8),
                   _lps_affine())
    write_dataset_json(msd, "Tiny", MODALITIES, LABELS, list(images), [])

    folder = to_nnunet_raw(msd, tmp_path / "raw", dataset_id=501)

    assert folder == tmp_path / "raw" / "Dataset501_Tiny"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        f"{cid}_{c:04d}.nii.gz" for cid in ("A_000", "A_001") for c in range(4)]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["A_000.nii.gz", "A_001.nii.gz"]
    assert json.loads((folder / "dataset.json").read_text()) == {
        "name": "Tiny",
        "channel_names": {"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"},
        "labels": {"background": 0, "edema": 1, "non-enhancing tumour": 2, "enhancing tumour": 3},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    for c in range(4):
        img = nib.load(str(folder / "imagesTr" / f"A_001_{c:04d}.nii.gz"))
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), images["A_001"][..., c])
        np.testing.assert_allclose(img.affine, _lps_affine())
        # What nnU-Net's SimpleITK reader sees: the axes reversed (z, y, x), the voxels unchanged.
        sitk_array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "imagesTr" / f"A_001_{c:04d}.nii.gz")))
        np.testing.assert_array_equal(sitk_array, images["A_001"][..., c].transpose(2, 1, 0))


@pytest.mark.parametrize("axcodes_affine, transpose_forward", [
    (_lps_affine(), [0, 1, 2]),
    (_lps_affine(), [2, 0, 1]),
    (np.array([[0, 0, 1.2, 0], [-1.0, 0, 0, 0], [0, -1.1, 0, 0], [0, 0, 0, 1]]), [1, 0, 2]),  # P I R
])
def test_find_mapping_recovers_nnunet_axis_order_and_matches_the_conventions(axcodes_affine,
                                                                            transpose_forward):
    ours = _smooth((5, 6, 7))  # canonical (X, Y, Z)
    reorientation = Reorientation.from_affine(axcodes_affine)
    raw = reorientation.invert(ours)                          # as stored in the file
    theirs = raw.transpose(2, 1, 0).transpose(transpose_forward)  # SimpleITK, then transpose_forward

    mapping, score = find_mapping(ours, theirs)

    assert mapping == expected_mapping(reorientation.to_canonical, transpose_forward)
    assert score == pytest.approx(1.0)
    np.testing.assert_array_equal(mapping.apply(theirs), ours)


def test_find_mapping_searches_all_48_when_every_axis_has_the_same_length():
    ours = _smooth((6, 6, 6), seed=1)
    truth = AxisMapping((1, 2, 0), (True, False, True))
    # theirs such that truth.apply(theirs) == ours: undo the flips, then the permutation
    theirs = np.transpose(np.flip(ours, (0, 2)), np.argsort(truth.perm))
    np.testing.assert_array_equal(truth.apply(theirs), ours)

    mapping, score = find_mapping(ours, theirs)

    assert mapping == truth and score == pytest.approx(1.0)
    assert find_mapping(ours, np.zeros((6, 6, 5))) is None  # no permutation gives our shape


def test_compare_case_and_report():
    rng = np.random.default_rng(2)
    ours = np.stack([_smooth((5, 6, 7), seed=s) for s in range(2)], axis=-1)
    mapping = AxisMapping((2, 1, 0), (False, False, True))
    # nnU-Net's layout: channel first, axes reversed, our Z reversed, a little noise
    theirs = np.flip(np.moveaxis(ours, -1, 0).transpose(0, 3, 2, 1), 1)
    theirs = theirs + rng.normal(0, 0.01, theirs.shape)

    good = compare_case("A", ours, theirs, mapping)
    bad = compare_case("B", ours, theirs[:, :-1], mapping)

    assert good["shapes_match"] and good["shape_nnunet"] == [5, 6, 7]
    assert len(good["correlation"]) == 2 and min(good["correlation"]) > 0.999
    assert good["correlation"][0] == pytest.approx(pearson(ours[..., 0], mapping.apply(theirs[0])))
    assert 0.0 < good["max_abs_difference"] < 0.1
    assert not bad["shapes_match"] and bad["correlation"] is None and bad["shape_nnunet"] == [5, 6, 6]

    ours_run = {"wall": 30.0, "stages": {"validate": 1.0, "preprocess": 29.0}, "spacing": [1.0, 1.0, 1.2]}
    nnunet_run = {"wall": 100.0, "stages": {"startup": 5.0, "preprocess": 95.0}}
    report = build_report(ours_run, nnunet_run, [1.0, 1.0, 1.20000005], [good], {"perm": [2, 1, 0]}, 2,
                          {"n_cases": 1})
    assert report["ratio"] == pytest.approx(0.3)
    assert report["spacing"]["match"] and report["n_cases"] == 1 and report["cores"] == 2
    assert all(report["goals"].values())
    json.dumps(report)  # the rule writes it as JSON

    slow = build_report({**ours_run, "wall": 60.0}, nnunet_run, [1.0, 1.0, 1.5], [good, bad], {}, 2, {})
    assert slow["ratio"] == pytest.approx(0.6)
    assert slow["goals"] == {"ratio <= 0.5": False, "same spacing": False, "same shapes": False,
                             "correlation >= 0.99": False}
    text = format_report(slow)
    assert "SHAPES DIFFER" in text and "DIFFER" in text and "0.600" in text


def test_synthesize_case_is_brats_like_and_deterministic():
    image, label, affine = synthesize_case(3, seed=0)
    again, _, _ = synthesize_case(3, seed=0)
    assert image.dtype == np.int16 and image.shape[-1] == 4 and label.shape == image.shape[:3]
    assert all(120 <= n <= 180 for n in label.shape)
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    assert set(np.unique(label)) == {0, 1, 2, 3}
    head = image[..., 0] > 0
    assert (image[~head] == 0).all() and (image[head] > 0).all() and 0.1 < head.mean() < 0.6
    np.testing.assert_array_equal(image, again)


def test_report_puts_the_run_through_snakemake_beside_the_in_process_one():
    ours = {"wall": 30.0, "stages": {"validate": 1.0, "preprocess": 29.0}, "spacing": [1.0, 1.0, 1.2], "cpu": 50.0}
    nnunet = {"wall": 100.0, "stages": {"preprocess": 100.0}, "cpu": 180.0}
    workflow = {"wall": 45.0, "cpu": 60.0, "command": "snakemake --cores 2 --until preprocess",
                "same_outputs": True, "jobs_s": {"fingerprint": 2.0, "preprocess": 70.0}}

    report = build_report(ours, nnunet, [1.0, 1.0, 1.2], [], {}, 2, {}, workflow)

    assert report["ratio"] == pytest.approx(0.3) and report["workflow_ratio"] == pytest.approx(0.45)
    assert report["cpu_ratio"] == pytest.approx(50 / 180) and report["workflow_cpu_ratio"] == pytest.approx(60 / 180)
    assert report["goals"]["ratio through Snakemake <= 0.5"] and report["goals"]["Snakemake writes the same"]
    json.dumps(report)
    text = format_report(report)
    assert "0.300" in text and "0.450" in text and "snakemake --cores 2 --until preprocess" in text

    slow = build_report(ours, nnunet, [1.0, 1.0, 1.2], [], {}, 2, {},
                        {**workflow, "wall": 60.0, "same_outputs": False})
    assert not slow["goals"]["ratio through Snakemake <= 0.5"] and not slow["goals"]["Snakemake writes the same"]
    assert "DIFFER from the in-process ones" in format_report(slow)
