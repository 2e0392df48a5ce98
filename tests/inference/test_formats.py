"""`python -m unet predict` on one scan stored in every format (NRRD, MetaImage with and without a
detached header, NIfTI, a DICOM series in a subfolder), on an oblique grid: each segmentation is
written in its scan's format, SimpleITK reads scan and segmentation on the same grid, and the
same scan gives the same segmentation whatever its format."""

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from unet.io.images import DICOM_SERIES, load_image, save_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

FORMATS = {"a": ".nrrd", "b": ".mha", "c": ".mhd", "d": ".nii.gz", "e": DICOM_SERIES}


@pytest.fixture(scope="module")
def one_channel_results(preprocessed_demo, tmp_path_factory, describe):
    """The demo's plan cut to its first channel (DICOM series hold one), with an untrained
    network of that plan in fold_0 (and its model.json): its segmentations are arbitrary but
    deterministic."""
    import keras

    from unet.io.atomic import write_json
    from unet.model.network import build_from_plan
    from unet.preprocessing.plan import Plan

    plans = {**preprocessed_demo.plans, "modalities": preprocessed_demo.plans["modalities"][:1],
             "normalization": preprocessed_demo.plans["normalization"][:1]}
    results = tmp_path_factory.mktemp("one_channel") / "demo"
    write_json(results / "plans.json", plans)
    keras.utils.set_random_seed(5)
    (results / "fold_0").mkdir(parents=True)
    build_from_plan(Plan.from_json(plans)).save(results / "fold_0" / "model.keras")
    describe(results / "fold_0", results / "plans.json")
    return results


def oblique_scan(path) -> tuple[np.ndarray, np.ndarray]:
    """A demo image's first channel as whole numbers (DICOM stores integers), its grid turned
    about two axes and made right-handed (as every DICOM series is)."""
    image, affine = load_image(path)
    volume = np.rint(image[..., 0]).astype(np.int16)
    if np.linalg.det(affine[:3, :3]) < 0:  # the same voxels, the third axis walked backwards
        volume = volume[:, :, ::-1]
        affine = affine.copy()
        affine[:3, 3] += affine[:3, 2] * (volume.shape[2] - 1)
        affine[:3, 2] *= -1
    a, b = 0.35, -0.2
    turn = np.eye(4)
    turn[:3, :3] = (np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                    @ np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]))
    return np.ascontiguousarray(volume), turn @ affine


def read_sitk(path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def test_each_format_is_predicted_into_its_own_format_and_grid(preprocessed_demo, one_channel_results,
                                                                tmp_path):
    volume, affine = oblique_scan(preprocessed_demo.dataset.test[0].image)
    scans, out = tmp_path / "scans", tmp_path / "out"
    for case, ending in FORMATS.items():
        name = case if ending == DICOM_SERIES else f"{case}{ending}"
        save_image(scans / name, volume, affine, ending=ending)
    result = subprocess.run(
        [sys.executable, "-m", "unet", "predict", "-i", str(scans), "-o", str(out), "-m", str(one_channel_results),
         "--overlap", "0.25", "--batch-size", "4"], capture_output=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote 5 segmentation(s) to {out}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.nrrd", "b.mha", "c.mhd", "c.zraw", "d.nii.gz", "e"]
    assert len(list((out / "e").glob("*.dcm"))) == volume.shape[2]

    segmentations = {}
    for case, ending in FORMATS.items():
        name = case if ending == DICOM_SERIES else f"{case}{ending}"
        scan, segmentation = read_sitk(scans / name), read_sitk(out / name)
        assert segmentation.GetSize() == scan.GetSize() == volume.shape, name
        for ours, theirs in ((segmentation.GetSpacing(), scan.GetSpacing()),
                             (segmentation.GetOrigin(), scan.GetOrigin()),
                             (segmentation.GetDirection(), scan.GetDirection())):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12, err_msg=name)
        segmentations[case] = sitk.GetArrayFromImage(segmentation)
        assert set(np.unique(segmentations[case])) <= set(preprocessed_demo.plan.label_values)
    # The same voxels on the same grid: the same segmentation. (DICOM rounds its coordinates to 16
    # characters, 1e-13 mm here; NIfTI its affine to float32, 1e-6 mm: left out.)
    for case in ("b", "c", "e"):
        np.testing.assert_array_equal(segmentations[case], segmentations["a"])
