"""Choosing the configuration or pair ensemble from saved cross-validation probabilities."""

import json

import numpy as np
import pytest

from unet.evaluation.selection import candidates, find_best_configuration
from unet.inference.probabilities import Probabilities, ensemble_labels, save_probabilities
from unet.io.nifti import save_nifti

LABELS = {0: "background", 1: "organ"}
SHAPE = (12, 12, 12)
CASES = ["case_0", "case_1", "case_2"]


def cube(start: int, size: int = 5) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[start:start + size, 3:3 + size, 3:3 + size] = True
    return mask


def two_class(foreground: np.ndarray) -> np.ndarray:
    """(2, X, Y, Z) softmax-like probabilities from a foreground probability map."""
    return np.stack([1.0 - foreground, foreground]).astype(np.float32)


def write(tmp_path, configurations: dict) -> tuple[dict, dict]:
    """Each configuration's {case: foreground probability} as {case}.npz in two fold folders;
    the references (organ = cube(i)) as NIfTI. Returns (folders per configuration, references)."""
    folders, refs = {}, {}
    for case in CASES:
        refs[case] = tmp_path / "labels" / f"{case}.nii.gz"
        save_nifti(refs[case], cube(int(case[-1])).astype(np.uint8), np.eye(4))
    for name, maps in configurations.items():
        folders[name] = [tmp_path / name / f"fold_{k}" for k in range(2)]
        for i, case in enumerate(CASES):
            save_probabilities(folders[name][i % 2] / f"{case}.npz", two_class(maps[case]), (0, 1))
    return folders, refs


def test_the_better_configuration_wins(tmp_path):
    good = {c: np.where(cube(i), 0.9, 0.1) for i, c in enumerate(CASES)}
    # Shifted by two voxels: worse alone, and averaged with `good` only the overlap stays > 0.5.
    shifted = {c: np.where(cube(i + 2), 0.9, 0.05) for i, c in enumerate(CASES)}
    folders, refs = write(tmp_path, {"2d": shifted, "3d_fullres": good})
    out = tmp_path / "best_configuration.json"
    result = find_best_configuration(folders, refs, LABELS, out)
    assert json.loads(out.read_text()) == result
    assert result["best"] == {"name": "3d_fullres", "configurations": ["3d_fullres"], "ensemble": False,
                              "foreground_dice": 1.0}
    scores = {c["name"]: c["foreground_dice"] for c in result["candidates"]}
    assert list(scores) == ["2d", "3d_fullres", "2d+3d_fullres"]
    assert scores["2d"] == pytest.approx(0.6)        # 3 of 5 slices overlap: 2 * 75 / 250
    assert scores["2d+3d_fullres"] == pytest.approx(0.75)  # the overlap alone: 2 * 75 / 200
    assert result["cases"] == 3 and result["classes"] == {"organ": [1]}
    # Without ensembles only the two configurations are candidates.
    alone = find_best_configuration(folders, refs, LABELS, out, allow_ensembles=False)
    assert [c["name"] for c in alone["candidates"]] == ["2d", "3d_fullres"]


def test_an_ensemble_wins_when_the_average_beats_both(tmp_path):
    # Each configuration is confident on the organ and half-sure (0.6) of its own false region;
    # averaged, each false region falls to 0.35 and only the organ is left.
    a, b = {}, {}
    for i, case in enumerate(CASES):
        false_a, false_b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
        false_a[10:12, 10:12, :] = True   # apart from each other and the organ
        false_b[0:2, 10:12, :] = True
        a[case] = np.where(cube(i), 0.95, np.where(false_a, 0.6, 0.1))
        b[case] = np.where(cube(i), 0.95, np.where(false_b, 0.6, 0.1))
    folders, refs = write(tmp_path, {"2d": a, "3d_fullres": b})
    result = find_best_configuration(folders, refs, LABELS, tmp_path / "best_configuration.json")
    assert result["best"]["configurations"] == ["2d", "3d_fullres"] and result["best"]["ensemble"]
    assert result["best"]["foreground_dice"] == 1.0
    assert all(c["foreground_dice"] < 1.0 for c in result["candidates"] if len(c["configurations"]) == 1)
    labels = ensemble_labels([folders["2d"][0] / "case_0.npz", folders["3d_fullres"][0] / "case_0.npz"])
    np.testing.assert_array_equal(labels, cube(0))


def test_a_tie_goes_to_the_single_configuration(tmp_path):
    same = {c: np.where(cube(i), 0.9, 0.1) for i, c in enumerate(CASES)}
    folders, refs = write(tmp_path, {"3d_fullres": same, "2d": same})
    result = find_best_configuration(folders, refs, LABELS, tmp_path / "best.json")
    assert result["best"]["name"] == "3d_fullres"


def test_configurations_must_cover_the_same_cases(tmp_path):
    maps = {c: np.where(cube(i), 0.9, 0.1) for i, c in enumerate(CASES)}
    folders, refs = write(tmp_path, {"2d": maps, "3d_fullres": maps})
    (folders["2d"][0] / "case_0.npz").unlink()
    with pytest.raises(ValueError, match="predicted different cases: \\['case_0'\\]"):
        find_best_configuration(folders, refs, LABELS, tmp_path / "best.json")


def test_region_probabilities_are_painted_into_labels(tmp_path):
    # A region model's file: sigmoid channels "whole" {1, 2} and "core" {2}.
    probs = np.zeros((2, 4, 4, 4), dtype=np.float32)
    probs[0, :2] = 0.8
    probs[1, 0] = 0.7
    save_probabilities(tmp_path / "c.npz", probs, (0, 1, 2), regions={"whole": [1, 2], "core": [2]})
    loaded = Probabilities.load(tmp_path / "c.npz")
    assert loaded.regions == {"whole": (1, 2), "core": (2,)}
    labels = loaded.labels()
    assert (labels[0] == 2).all() and (labels[1] == 1).all() and (labels[2:] == 0).all()


def test_candidates_are_singles_then_pairs():
    assert [c.name for c in candidates(["2d", "3d_fullres", "3d_lowres"])] == [
        "2d", "3d_fullres", "3d_lowres", "2d+3d_fullres", "2d+3d_lowres", "3d_fullres+3d_lowres"]


def test_one_configuration_is_scored_from_its_label_maps(tmp_path):
    """Nothing to average: the label maps suffice, and score as the probabilities would."""
    good = {c: np.where(cube(i + 1), 0.9, 0.1) for i, c in enumerate(CASES)}
    folders, refs = write(tmp_path, {"3d_fullres": good})
    for k, folder in enumerate(folders["3d_fullres"]):
        for case in CASES[k::2]:
            save_nifti(folder / f"{case}.nii.gz", ensemble_labels([folder / f"{case}.npz"]).astype(np.uint8),
                       np.eye(4))
    from_npz = find_best_configuration(folders, refs, LABELS, tmp_path / "a.json")
    from_labels = find_best_configuration(folders, refs, LABELS, tmp_path / "b.json", ending=".nii.gz")
    assert from_labels == from_npz and from_labels["best"]["foreground_dice"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="chosen between by their saved probabilities"):
        find_best_configuration({**folders, "2d": folders["3d_fullres"]}, refs, LABELS, tmp_path / "c.json",
                                ending=".nii.gz")
