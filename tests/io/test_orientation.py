import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from unet.io.orientation import Reorientation

AXCODES = ["RAS", "LPS", "PSR", "ASL", "RPI", "LAS", "IRP", "SAL"]


def affine_for(axcodes, shape, spacing=(1.0, 2.0, 3.0)):
    """Affine of an array stored in `axcodes` voxel order, derived from a RAS array of `shape`.

    `shape` and `spacing` are those of the RAS array; returns (transform RAS->axcodes, affine).
    """
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = (-10.0, 5.0, 7.5)
    transform = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(axcodes))
    return transform, ras_affine @ nio.inv_ornt_aff(transform, shape)


def ras_volume(shape=(5, 6, 7), channels=None, seed=0):
    rng = np.random.default_rng(seed)
    full = shape if channels is None else shape + (channels,)
    return rng.normal(size=full).astype(np.float32)


@pytest.mark.parametrize("axcodes", AXCODES)
def test_apply_recovers_ras_array_and_invert_restores_raw(axcodes):
    ras = ras_volume()
    transform, affine = affine_for(axcodes, ras.shape)
    raw = nio.apply_orientation(ras, transform)
    assert nib.aff2axcodes(affine) == tuple(axcodes)

    reo = Reorientation.from_affine(affine)
    canonical = reo.apply(raw)
    np.testing.assert_array_equal(canonical, ras)
    back = reo.invert(canonical)
    assert back.shape == raw.shape
    np.testing.assert_array_equal(back, raw)


@pytest.mark.parametrize("axcodes", AXCODES)
def test_trailing_channel_axis_is_carried_along(axcodes):
    ras = ras_volume(channels=3)
    transform, affine = affine_for(axcodes, ras.shape[:3])
    raw = nio.apply_orientation(ras, transform)
    reo = Reorientation.from_affine(affine)
    canonical = reo.apply(raw)
    assert canonical.shape == ras.shape
    np.testing.assert_array_equal(canonical, ras)
    # Each channel is moved as a whole: channel c of the result is channel c reoriented alone.
    for c in range(3):
        np.testing.assert_array_equal(canonical[..., c], reo.apply(raw[..., c]))
    np.testing.assert_array_equal(reo.invert(canonical), raw)


@pytest.mark.parametrize("axcodes", AXCODES)
def test_matches_nibabel_closest_canonical(axcodes):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 1000, size=(4, 6, 9)).astype(np.float32)
    affine = np.diag([0.8, 1.5, 2.5, 1.0])
    transform = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(axcodes))
    affine = affine @ nio.inv_ornt_aff(transform, (4, 6, 9))
    img = nib.Nifti1Image(raw, affine)
    canon = nib.as_closest_canonical(img)

    reo = Reorientation.from_affine(affine)
    np.testing.assert_array_equal(reo.apply(raw), np.asarray(canon.dataobj))
    # The canonical array's own affine (raw affine composed with the inverse transform) is RAS.
    canonical_affine = affine @ nio.inv_ornt_aff(np.asarray(reo.to_canonical), raw.shape)
    assert nib.aff2axcodes(canonical_affine) == ("R", "A", "S")
    np.testing.assert_allclose(canonical_affine, canon.affine, atol=1e-6)


def test_slightly_oblique_affine_uses_closest_axes():
    angle = np.deg2rad(10)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    _, affine = affine_for("PSR", (5, 6, 7))
    oblique = affine.copy()
    oblique[:3, :3] = rot @ affine[:3, :3]
    assert Reorientation.from_affine(oblique) == Reorientation.from_affine(affine)


@pytest.mark.parametrize("axcodes", AXCODES)
def test_spacing_and_shape_permute_to_canonical_axes(axcodes):
    ras_shape, ras_spacing = (5, 6, 7), (1.0, 2.0, 3.0)
    transform, affine = affine_for(axcodes, ras_shape, ras_spacing)
    raw = nio.apply_orientation(np.zeros(ras_shape), transform)
    raw_spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    reo = Reorientation.from_affine(affine)
    assert reo.shape(raw.shape) == ras_shape
    assert reo.shape(raw.shape + (4,)) == ras_shape  # channel axis ignored
    assert reo.spacing(raw_spacing) == pytest.approx(ras_spacing)


def test_permuting_axcodes_actually_permute():
    # PSR stores the RAS axes in the order (y, z, x): raw shape is a permutation of the RAS one.
    transform, affine = affine_for("PSR", (5, 6, 7))
    reo = Reorientation.from_affine(affine)
    assert reo.shape((6, 7, 5)) == (5, 6, 7)
    assert reo.spacing((2.0, 3.0, 1.0)) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("axcodes", ["RAS", "PSR", "LPI"])
def test_json_round_trip(axcodes):
    _, affine = affine_for(axcodes, (5, 6, 7))
    reo = Reorientation.from_affine(affine)
    import json
    assert Reorientation.from_json(json.loads(json.dumps(reo.to_json()))) == reo


def test_ras_affine_is_identity_transform():
    reo = Reorientation.from_affine(np.diag([1.0, 1.0, 1.0, 1.0]))
    assert reo.to_canonical == ((0.0, 1.0), (1.0, 1.0), (2.0, 1.0))
    arr = ras_volume()
    np.testing.assert_array_equal(reo.apply(arr), arr)
