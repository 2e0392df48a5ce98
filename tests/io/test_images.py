"""unet.io.images and its SimpleITK back end: every format round-trips voxels and geometry (an
oblique, left-handed grid with non-uniform spacing), SimpleITK's LPS (z, y, x) world becomes the
package's RAS (x, y, z) one, channels in vector or 4D images, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from unet.io.images import (DICOM_SERIES, FILE_ENDINGS, ImageReadError, image_ending, image_path,
                            image_shape, load_image, load_label, read_image, save_image, strip_ending)

SITK_FILES = (".nrrd", ".nhdr", ".mha", ".mhd")
SPACING = (0.7, 1.3, 2.9)


def rotation(a: float, b: float) -> np.ndarray:
    """About z by `a`, then about x by `b`: no axis stays aligned with the world."""
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def oblique_affine(left_handed: bool = True) -> np.ndarray:
    affine = np.eye(4)
    flip = np.diag([1.0, -1.0, 1.0]) if left_handed else np.eye(3)
    affine[:3, :3] = rotation(0.3, 0.2) @ flip @ np.diag(SPACING)
    affine[:3, 3] = (10.1, -20.3, 5.5)
    return affine


def labels(shape=(7, 6, 5)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4, shape).astype(np.uint8)


def sitk_geometry(image: sitk.Image) -> tuple[np.ndarray, ...]:
    return (np.array(image.GetSize()), np.array(image.GetSpacing()), np.array(image.GetOrigin()),
            np.array(image.GetDirection()))


@pytest.mark.parametrize("ending", FILE_ENDINGS)
def test_every_format_round_trips_voxels_and_an_oblique_grid(tmp_path, ending):
    affine = oblique_affine()
    image = np.random.default_rng(1).normal(size=(7, 6, 5, 2)).astype(np.float32)
    save_image(tmp_path / f"img{ending}", image, affine)
    save_image(tmp_path / f"lab{ending}", labels(), affine, dtype=np.uint8)
    read, read_affine = load_image(tmp_path / f"img{ending}")
    label, label_affine = load_label(tmp_path / f"lab{ending}")
    np.testing.assert_array_equal(read, image)
    np.testing.assert_array_equal(label, labels())
    # NIfTI stores the affine in float32; the others keep float64 up to its last digit.
    atol = 1e-5 if ending.startswith(".nii") else 1e-13
    np.testing.assert_allclose(read_affine, affine, rtol=0, atol=atol)
    np.testing.assert_allclose(label_affine, affine, rtol=0, atol=atol)
    assert image_shape(tmp_path / f"img{ending}") == (7, 6, 5, 2)
    assert image_shape(tmp_path / f"lab{ending}") == (7, 6, 5)


@pytest.mark.parametrize("ending", SITK_FILES)
def test_simpleitk_geometry_becomes_the_ras_affine(tmp_path, ending):
    """A file written by SimpleITK itself: voxel (i, j, k) of our array is SimpleITK's [k, j, i],
    and our affine maps it to SimpleITK's physical point with x and y negated (LPS -> RAS)."""
    voxels = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # (z, y, x)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(SPACING)
    image.SetDirection((rotation(0.4, -0.25) @ np.diag([-1.0, 1.0, 1.0])).ravel().tolist())
    image.SetOrigin((3.5, -7.25, 12.0))
    sitk.WriteImage(image, str(tmp_path / f"a{ending}"))
    array, affine = read_image(tmp_path / f"a{ending}")
    assert array.shape == (7, 6, 5) and array.dtype == np.int16
    for index in [(0, 0, 0), (6, 0, 0), (2, 5, 1), (6, 5, 4)]:
        assert array[index] == voxels[index[::-1]]
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose(affine @ [*index, 1.0], [-lps[0], -lps[1], lps[2], 1.0], atol=1e-12)


@pytest.mark.parametrize("ending", SITK_FILES)
def test_what_is_read_is_written_back_on_the_same_grid(tmp_path, ending):
    """As a prediction is: read an image, write a label map with its affine; SimpleITK reads
    both files back with the same size, spacing, origin and direction."""
    original = sitk.GetImageFromArray(np.zeros((5, 6, 7), np.float32))
    original.SetSpacing(SPACING)
    original.SetDirection((rotation(-0.7, 0.45) @ np.diag([1.0, 1.0, -1.0])).ravel().tolist())
    original.SetOrigin((-91.5, 120.25, -33.0))
    sitk.WriteImage(original, str(tmp_path / f"in{ending}"))
    _, affine = read_image(tmp_path / f"in{ending}")
    save_image(tmp_path / f"out{ending}", labels(), affine)
    written = sitk.ReadImage(str(tmp_path / f"out{ending}"))
    for ours, theirs in zip(sitk_geometry(written), sitk_geometry(sitk.ReadImage(str(tmp_path / f"in{ending}")))):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels().transpose(2, 1, 0))


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_channels_as_vector_components_or_a_fourth_axis(tmp_path, ending):
    channels = [np.full((5, 6, 7), c, np.float32) + np.arange(7, dtype=np.float32) for c in (10, 20, 30)]
    vector = sitk.GetImageFromArray(np.stack(channels, axis=-1), isVector=True)
    series = sitk.JoinSeries([sitk.GetImageFromArray(c) for c in channels])  # 4D (x, y, z, channel)
    for name, image in (("vector", vector), ("series", series)):
        image.SetSpacing(SPACING + (1.0,) * (image.GetDimension() - 3))
        sitk.WriteImage(image, str(tmp_path / f"{name}{ending}"))
        array, affine = load_image(tmp_path / f"{name}{ending}")
        assert array.shape == (7, 6, 5, 3), name
        for c, expected in enumerate(channels):
            np.testing.assert_array_equal(array[..., c], expected.transpose(2, 1, 0))
        np.testing.assert_allclose(affine, np.diag([-0.7, -1.3, 2.9, 1.0]), atol=1e-15)
        assert image_shape(tmp_path / f"{name}{ending}") == (7, 6, 5, 3)


def test_a_detached_header_and_its_data_file_are_written_as_a_pair(tmp_path):
    save_image(tmp_path / "a.mhd", labels(), oblique_affine())
    save_image(tmp_path / "b.nhdr", labels(), oblique_affine())
    save_image(tmp_path / "a.mhd", labels() + 1, oblique_affine())  # replaced in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mhd", "a.zraw", "b.nhdr", "b.raw.gz"]
    np.testing.assert_array_equal(load_label(tmp_path / "a.mhd")[0], labels() + 1)


def test_endings_and_case_names():
    assert strip_ending("a/BRATS_001.nii.gz") == "BRATS_001"
    assert strip_ending("x/la_003.nii") == "la_003"
    assert strip_ending("weird.name.nrrd") == "weird.name"
    assert strip_ending("CT_7.MHA") == "CT_7"
    assert strip_ending("series_folder") == "series_folder"
    assert image_path("out", "case", ".mha").name == "case.mha"
    assert image_path("out", "case", DICOM_SERIES).name == "case"


def test_unreadable_images_name_the_file(tmp_path):
    (tmp_path / "garbage.nrrd").write_text("not an image")
    (tmp_path / "notes.txt").write_text("")
    save_image(tmp_path / "truncated.mha", np.ones((16, 16, 16), np.float32), np.eye(4))
    raw = (tmp_path / "truncated.mha").read_bytes()
    (tmp_path / "truncated.mha").write_bytes(raw[: len(raw) // 2])
    cases = [("garbage.nrrd", "cannot read image"), ("truncated.mha", "cannot read image"),
             ("absent.mhd", "does not exist"), ("notes.txt", "not a supported image"),
             ("absent", "does not exist")]
    for name, message in cases:
        with pytest.raises(ImageReadError, match=f"{tmp_path / name}: {message}"):
            load_image(tmp_path / name)
    with pytest.raises(ImageReadError, match="garbage.nrrd: cannot read image header"):
        image_shape(tmp_path / "garbage.nrrd")
    with pytest.raises(ImageReadError, match="not a supported image"):
        image_ending(tmp_path / "notes.txt")


def test_a_label_map_must_hold_whole_numbers(tmp_path):
    save_image(tmp_path / "lab.nrrd", np.full((4, 4, 4), 0.5, np.float32), np.eye(4))
    with pytest.raises(ImageReadError, match="lab.nrrd: label map holds non-integer values"):
        load_label(tmp_path / "lab.nrrd")


def test_an_unknown_ending_is_not_written(tmp_path):
    with pytest.raises(ValueError, match="cannot write this format"):
        save_image(tmp_path / "a.png", labels(), np.eye(4))
    assert not list(tmp_path.iterdir())
