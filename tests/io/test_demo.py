import json

import nibabel as nib
import numpy as np
import pytest

from unet.io.demo import LABELS, MODALITIES, REGIONS, case_ids, generate_demo, synthesize_case
from unet.io.msd import load_dataset
from unet.io.images import load_image, load_label, voxel_spacing


@pytest.fixture(scope="module")
def cases():
    return [synthesize_case(i, seed=0) for i in range(12)]


def test_same_seed_writes_identical_bytes(tmp_path):
    a = generate_demo(tmp_path / "a", n_train=2, n_test=1, seed=3)
    b = generate_demo(tmp_path / "b", n_train=2, n_test=1, seed=3)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert [str(p) for p in files_a] == [
        "dataset.json", "imagesTr/DEMO_000.nii.gz", "imagesTr/DEMO_001.nii.gz",
        "imagesTs/DEMO_002.nii.gz", "labelsTr/DEMO_000.nii.gz", "labelsTr/DEMO_001.nii.gz"]
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_different_seed_gives_different_data(tmp_path):
    a = generate_demo(tmp_path / "a", n_train=1, n_test=0, seed=0)
    b = generate_demo(tmp_path / "b", n_train=1, n_test=0, seed=1)
    img_a, _ = load_image(a / "imagesTr" / "DEMO_000.nii.gz")
    img_b, _ = load_image(b / "imagesTr" / "DEMO_000.nii.gz")
    assert img_a.shape != img_b.shape or not np.array_equal(img_a, img_b)
    # And per case: the arrays depend on the seed, and on the case index.
    im0, lab0, aff0 = synthesize_case(0, seed=0)
    im0b, lab0b, aff0b = synthesize_case(0, seed=0)
    np.testing.assert_array_equal(im0, im0b)
    np.testing.assert_array_equal(lab0, lab0b)
    np.testing.assert_array_equal(aff0, aff0b)
    im1, _, _ = synthesize_case(0, seed=1)
    assert im0.shape != im1.shape or not np.array_equal(im0, im1)


def test_written_files_match_synthesized_case(tmp_path):
    root = generate_demo(tmp_path, n_train=2, n_test=1, seed=0)
    ds = load_dataset(root)
    assert ds.modalities == tuple(MODALITIES) and ds.labels == LABELS
    image, label, affine = synthesize_case(1, seed=0)
    img, img_aff = load_image(root / "imagesTr" / "DEMO_001.nii.gz")
    lab, lab_aff = load_label(root / "labelsTr" / "DEMO_001.nii.gz")
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(lab, label)
    np.testing.assert_allclose(img_aff, affine, atol=1e-4)
    np.testing.assert_allclose(lab_aff, affine, atol=1e-4)
    # The test case is index 2: synthesized like any other, written without a label.
    test_img, _ = load_image(root / "imagesTs" / "DEMO_002.nii.gz")
    np.testing.assert_array_equal(test_img, synthesize_case(2, seed=0)[0])
    assert not (root / "labelsTr" / "DEMO_002.nii.gz").exists()


def test_dataset_json_declares_the_brats_style_regions(tmp_path):
    root = generate_demo(tmp_path, n_train=1, n_test=0, seed=0)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["regions"] == {"whole tumour": [1, 2, 3], "tumour core": [2, 3],
                               "enhancing tumour": [3]} == REGIONS
    # Each region is a union of declared foreground labels, nested like BraTS's WT > TC > ET.
    regions = [set(v) for v in meta["regions"].values()]
    assert all(r <= set(LABELS) - {0} for r in regions)
    assert regions[0] > regions[1] > regions[2]


def test_case_ids():
    assert case_ids(2, 1) == (["DEMO_000", "DEMO_001"], ["DEMO_002"])


def test_two_channels_and_all_labels_in_every_case(cases):
    for image, label, _ in cases:
        assert image.ndim == 4 and image.shape[-1] == 2 and image.dtype == np.float32
        assert label.shape == image.shape[:3] and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3}
        # Outside the head both channels are exactly zero (that is what cropping finds).
        head = np.any(image != 0, axis=-1)
        assert head.any() and not head.all()
        assert not label[~head].any()


def test_channels_carry_the_contrast(cases):
    image, label, _ = cases[0]
    flair, t1gd = image[..., 0], image[..., 1]
    assert flair[label == 1].mean() > 1.3 * flair[(label == 0) & (flair > 0)].mean()
    assert t1gd[label == 3].mean() > 1.5 * t1gd[label == 2].mean()


def test_varied_geometry_across_twelve_cases(cases):
    axcodes = {nib.aff2axcodes(aff) for _, _, aff in cases}
    assert len(axcodes) >= 3
    spacings = [voxel_spacing(aff) for _, _, aff in cases]
    assert any(sp.max() / sp.min() > 1.5 for sp in spacings)  # at least one anisotropic case
    assert len({tuple(np.round(sp, 3)) for sp in spacings}) >= 3
    for image, _, _ in cases:
        assert all(40 <= n <= 64 for n in image.shape[:3])
    assert len({image.shape[:3] for image, _, _ in cases}) > 1


def test_some_seed_permutes_axes():
    # Beyond flips, the reorientation must also have axis permutations to undo.
    codes = {nib.aff2axcodes(synthesize_case(i, seed=s)[2]) for s in range(3) for i in range(12)}
    assert any(c[0] not in "LR" for c in codes)
