import nibabel as nib
import numpy as np
import pytest

from unet.io.images import ImageReadError, load_image, load_label, voxel_spacing
from unet.io.nifti import save_nifti


def lps_affine(spacing=(0.8, 1.0, 2.5)):
    a = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    a[:3, 3] = (12.0, -3.0, 40.0)
    return a


def test_3d_image_round_trip_gets_channel_axis(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    path = tmp_path / "img.nii.gz"
    save_nifti(path, data, lps_affine())
    arr, affine = load_image(path)
    assert arr.shape == (5, 6, 7, 1) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[..., 0], data)
    np.testing.assert_allclose(affine, lps_affine(), atol=1e-5)
    assert nib.load(str(path)).header.get_sform(coded=True)[1] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["img.nii.gz"]  # no temporary file left


def test_4d_image_round_trip_channels_last(tmp_path):
    data = np.arange(4 * 5 * 6 * 2, dtype=np.float32).reshape(4, 5, 6, 2)
    save_nifti(tmp_path / "img.nii.gz", data, np.eye(4))
    arr, _ = load_image(tmp_path / "img.nii.gz")
    np.testing.assert_array_equal(arr, data)


def test_label_round_trip_with_dtype(tmp_path):
    lab = np.zeros((6, 6, 6), dtype=np.int64)
    lab[1:3, 2:4, 3:5] = 4
    lab[4, 4, 4] = 1
    save_nifti(tmp_path / "lab.nii.gz", lab, lps_affine(), dtype=np.uint8)
    assert nib.load(str(tmp_path / "lab.nii.gz")).get_data_dtype() == np.uint8
    arr, affine = load_label(tmp_path / "lab.nii.gz")
    assert np.issubdtype(arr.dtype, np.integer)
    np.testing.assert_array_equal(arr, lab)
    np.testing.assert_allclose(affine, lps_affine(), atol=1e-5)


def test_label_with_singleton_fourth_axis(tmp_path):
    lab = np.zeros((4, 4, 4, 1), dtype=np.uint8)
    lab[1, 2, 3, 0] = 2
    save_nifti(tmp_path / "lab.nii.gz", lab, np.eye(4))
    arr, _ = load_label(tmp_path / "lab.nii.gz")
    assert arr.shape == (4, 4, 4) and arr[1, 2, 3] == 2 and arr.sum() == 2


def test_non_integer_label_is_rejected(tmp_path):
    lab = np.zeros((4, 4, 4), dtype=np.float32)
    lab[0, 0, 0] = 0.5
    path = tmp_path / "lab.nii.gz"
    save_nifti(path, lab, np.eye(4))
    with pytest.raises(ImageReadError, match="lab.nii.gz"):
        load_label(path)


def test_4d_multichannel_label_is_rejected(tmp_path):
    path = tmp_path / "lab.nii.gz"
    save_nifti(path, np.zeros((4, 4, 4, 2), np.uint8), np.eye(4))
    with pytest.raises(ImageReadError, match="lab.nii.gz"):
        load_label(path)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "img.nii.gz"
    save_nifti(path, np.ones((16, 16, 16), np.float32), np.eye(4))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="img.nii.gz"):
        load_image(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="absent.nii.gz"):
        load_image(tmp_path / "absent.nii.gz")


def test_voxel_spacing_from_rotated_affine():
    assert voxel_spacing(lps_affine((0.8, 1.0, 2.5))) == pytest.approx([0.8, 1.0, 2.5])
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([0.5, 2.0, 3.0])
    assert voxel_spacing(a) == pytest.approx([0.5, 2.0, 3.0])
    # Permuted axes: the spacing follows the array axis, not the world axis.
    p = np.zeros((4, 4))
    p[0, 1], p[1, 2], p[2, 0], p[3, 3] = 2.0, 3.0, 0.7, 1.0
    assert voxel_spacing(p) == pytest.approx([0.7, 2.0, 3.0])
