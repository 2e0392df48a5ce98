"""The workflow's side of the selection: a pair's label maps, and the report's table."""

import numpy as np
import pytest

from unet.evaluation.choice import selection_table, write_ensemble, write_selection_html
from unet.inference.probabilities import save_probabilities
from unet.io.images import load_label
from unet.io.nifti import save_nifti

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])


def _prediction(folder, case, probabilities, values=(0, 1, 3)):
    save_probabilities(folder / f"{case}.npz", probabilities, values)
    save_nifti(folder / f"{case}.nii.gz", np.asarray(values)[probabilities.argmax(0)].astype(np.uint8), AFFINE)


def test_the_pair_is_the_argmax_of_the_averaged_probabilities_in_the_members_geometry(tmp_path):
    rng = np.random.default_rng(0)
    first, second = tmp_path / "2d", tmp_path / "3d_fullres"
    first.mkdir(), second.mkdir()
    expected = {}
    for case in ("a", "b"):
        p, q = (rng.dirichlet(np.ones(3), size=(6, 5, 4)).transpose(3, 0, 1, 2).astype(np.float32) for _ in range(2))
        _prediction(first, case, p)
        _prediction(second, case, q)
        expected[case] = np.array([0, 1, 3])[np.argmax((p + q) / 2, axis=0)]
        assert not np.array_equal(expected[case], np.array([0, 1, 3])[p.argmax(0)])  # the average matters
    written = write_ensemble([first, second], tmp_path / "pair", ".nii.gz")
    assert [p.name for p in written] == ["a.nii.gz", "b.nii.gz"]
    for case, labels in expected.items():
        found, affine = load_label(tmp_path / "pair" / f"{case}.nii.gz")
        np.testing.assert_array_equal(found, labels)
        np.testing.assert_allclose(affine, AFFINE)


def test_a_case_one_member_lacks_is_named(tmp_path):
    first, second = tmp_path / "2d", tmp_path / "3d_fullres"
    first.mkdir(), second.mkdir()
    probabilities = np.full((3, 2, 2, 2), 1 / 3, dtype=np.float32)
    _prediction(first, "a", probabilities)
    _prediction(first, "b", probabilities)
    _prediction(second, "a", probabilities)
    with pytest.raises(ValueError, match=r"3d_fullres: no probabilities for case\(s\) \['b'\]"):
        write_ensemble([first, second], tmp_path / "pair", ".nii.gz")
    assert not (tmp_path / "pair").exists()


def test_the_table_ranks_the_candidates(tmp_path):
    result = {"best": {"name": "3d_fullres", "configurations": ["3d_fullres"], "ensemble": False},
              "criterion": "highest mean foreground Dice", "cases": 4,
              "candidates": [{"name": "2d", "foreground_dice": 0.7, "dice": {"organ": 0.7}},
                             {"name": "3d_fullres", "foreground_dice": 0.9, "dice": {"organ": 0.9}},
                             {"name": "2d+3d_fullres", "foreground_dice": 0.8, "dice": {"organ": 0.8}}]}
    assert list(selection_table(result)["candidate"]) == ["3d_fullres", "2d+3d_fullres", "2d"]
    write_selection_html(result, tmp_path / "configurations.html")
    page = (tmp_path / "configurations.html").read_text()
    assert "<b>3d_fullres</b>" in page and "0.9000" in page and "4 cross-validation cases" in page
