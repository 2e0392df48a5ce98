"""unet.io.dicom: a DICOM series (a folder of slices) written and read through SimpleITK, on an
oblique grid with non-uniform spacing, and the errors for folders that are not one series."""

from __future__ import annotations

import locale
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from unet.io.dicom import read_series, series_files, write_series
from unet.io.images import DICOM_SERIES, ImageReadError, image_ending, image_shape, load_label, save_image

SPACING = (0.7, 1.3, 2.9)


def oblique_affine() -> np.ndarray:
    """Right-handed, as every DICOM series is: slices stack along their rows x columns normal."""
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(SPACING)
    affine[:3, 3] = (10.1, -20.3, 5.5)
    return affine


def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 3000, (9, 8, 6)).astype(np.int16)


def test_a_series_round_trips_voxels_and_an_oblique_grid(tmp_path):
    before = locale.setlocale(locale.LC_ALL, None)
    save_image(tmp_path / "case", volume(), oblique_affine(), ending=DICOM_SERIES)
    # GDCM's writer switches the process to the "C" locale (Python's text files become ASCII).
    assert locale.setlocale(locale.LC_ALL, None) == before
    files = sorted(p.name for p in (tmp_path / "case").iterdir())
    assert files == [f"{k:04d}.dcm" for k in range(1, 7)]  # one file per slice
    assert image_ending(tmp_path / "case") == DICOM_SERIES
    assert image_shape(tmp_path / "case") == (9, 8, 6)
    array, affine = read_series(tmp_path / "case")
    assert array.dtype == np.int16
    np.testing.assert_array_equal(array, volume())
    # Decimal strings of 16 characters: exact to about 1e-13 mm here.
    np.testing.assert_allclose(affine, oblique_affine(), rtol=0, atol=1e-10)

    # SimpleITK, reading the series on its own, finds the grid we meant in its LPS terms.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "case")))
    image = reader.Execute()
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(image.GetSpacing(), SPACING, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)),
                               lps @ oblique_affine()[:3, :3] / SPACING, rtol=0, atol=1e-10)
    np.testing.assert_allclose(image.GetOrigin(), lps @ oblique_affine()[:3, 3], rtol=0, atol=1e-10)


def test_slices_are_ordered_by_position_not_by_file_name(tmp_path):
    write_series(tmp_path / "case", volume(), oblique_affine())
    names = sorted((tmp_path / "case").iterdir())
    for path, new in zip(names, reversed(range(len(names)))):  # the first slice gets the last name
        path.rename(path.with_name(f"x{new}.dcm"))
    array, _ = read_series(tmp_path / "case")
    np.testing.assert_array_equal(array, volume())


def test_a_label_map_is_written_and_replaces_an_earlier_one(tmp_path):
    labels = np.random.default_rng(1).integers(0, 4, (9, 8, 6)).astype(np.float64)  # whole numbers
    write_series(tmp_path / "pred", volume(), oblique_affine())
    write_series(tmp_path / "pred", labels, oblique_affine())
    label, affine = load_label(tmp_path / "pred")
    np.testing.assert_array_equal(label, labels)
    assert len(list((tmp_path / "pred").iterdir())) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]  # no staging folder left


def test_what_dicom_cannot_hold_is_refused(tmp_path):
    left_handed = oblique_affine() @ np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="left-handed"):
        write_series(tmp_path / "a", volume(), left_handed)
    with pytest.raises(ValueError, match="integer voxels"):
        write_series(tmp_path / "b", volume() + 0.5, oblique_affine())
    with pytest.raises(ValueError, match="do not fit 16 bits"):
        write_series(tmp_path / "c", volume().astype(np.int32) * 100, oblique_affine())
    assert not list(tmp_path.iterdir())


def test_folders_that_are_not_one_series_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(ImageReadError, match=f"{tmp_path / 'empty'}: no DICOM series"):
        load_label(tmp_path / "empty")
    write_series(tmp_path / "one", volume(), oblique_affine())
    write_series(tmp_path / "two", volume(), oblique_affine())
    for path in (tmp_path / "two").iterdir():
        shutil.copy(path, tmp_path / "one" / f"other_{path.name}")
    with pytest.raises(ImageReadError, match=f"{tmp_path / 'one'}: holds 2 DICOM series"):
        series_files(tmp_path / "one")
