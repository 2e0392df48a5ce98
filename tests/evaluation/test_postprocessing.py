"""Choosing the postprocessing on cross-validation predictions (real NIfTI files), and applying it."""

import json

import numpy as np
import pytest

from unet.evaluation.cv import case_dice, scoring_classes
from unet.evaluation.postprocessing import determine_postprocessing, postprocessing_table
from unet.inference.postprocess import apply_postprocessing, load_postprocessing, postprocess_folder
from unet.io.images import load_label, save_image
from unet.io.nifti import save_nifti

LABELS = {0: "background", 1: "organ", 2: "lesion"}
AFFINE = np.diag([1.5, 1.0, 2.0, 1.0])
SHAPE = (24, 24, 24)


def reference(shift: int = 0) -> np.ndarray:
    """An organ (label 1, one cube) and a lesion in two parts of different sizes (label 2)."""
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[2 + shift:10 + shift, 2:10, 2:10] = 1
    ref[14:18, 14:18, 14:18] = 2
    ref[14:17, 2:5, 14:17] = 2
    return ref


def with_island(ref: np.ndarray) -> np.ndarray:
    """The reference plus a spurious organ island far from the organ."""
    pred = ref.copy()
    pred[20:22, 20:22, 2:4] = 1
    return pred


def write_cases(tmp_path, predictions: dict, references: dict, folds: int = 2):
    """Predictions spread over `folds` fold folders, references in labels/; returns (folders, refs)."""
    folders = [tmp_path / "predictions" / f"fold_{k}" for k in range(folds)]
    refs = {}
    for i, case in enumerate(sorted(predictions)):
        save_nifti(folders[i % folds] / f"{case}.nii.gz", predictions[case], AFFINE)
        refs[case] = tmp_path / "labels" / f"{case}.nii.gz"
        save_nifti(refs[case], references[case], AFFINE)
    return folders, refs


def test_an_island_is_removed_and_two_true_parts_are_kept(tmp_path):
    # Organ predictions carry a spurious island: keeping the organ's largest component raises
    # its Dice. Keeping the largest of all foreground would drop the lesion, and keeping the
    # lesion's largest part would drop its true second part: both lower Dice, both dropped.
    refs = {f"case_{i}": reference(shift=i) for i in range(4)}
    preds = {case: with_island(ref) for case, ref in refs.items()}
    folders, ref_paths = write_cases(tmp_path, preds, refs)
    out = tmp_path / "postprocessing.json"
    spec = determine_postprocessing(folders, ref_paths, LABELS, out, expected=sorted(refs))

    assert json.loads(out.read_text()) == spec
    assert [(s["step"], s["labels"], s["kept"]) for s in spec["steps"]] == [
        ("all foreground", [1, 2], False), ("organ", [1], True), ("lesion", [2], False)]
    assert spec["apply"] == [{"operation": "keep_largest_component", "labels": [1]}]
    first, organ, lesion = spec["steps"]
    assert first["dice_after"]["lesion"] < first["dice_before"]["lesion"] == 1.0
    assert organ["dice_before"]["organ"] < 1.0 and organ["dice_after"]["organ"] == 1.0
    assert lesion["dice_after"]["lesion"] < lesion["dice_before"]["lesion"] == 1.0
    assert spec["dice_after"] == {"organ": 1.0, "lesion": 1.0}
    assert spec["foreground_dice_after"] > spec["foreground_dice_before"]
    assert spec["cases"] == 4 and spec["classes"] == {"organ": [1], "lesion": [2]}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no workspace left
    table = postprocessing_table(spec)
    assert table.loc["organ", "kept"] == "yes" and table.loc["lesion", "kept"] == "no"
    assert table.loc["organ", "organ"].endswith("-> 1.0000")


def test_removing_the_island_for_all_foreground_is_kept(tmp_path):
    labels = {0: "background", 1: "organ"}
    refs = {f"case_{i}": (reference(shift=i) == 1).astype(np.uint8) for i in range(3)}
    preds = {case: with_island(ref) for case, ref in refs.items()}
    folders, ref_paths = write_cases(tmp_path, preds, refs)
    spec = determine_postprocessing(folders, ref_paths, labels, tmp_path / "pp.json")
    # One class: nnU-Net tries only the step for all foreground.
    assert [(s["step"], s["kept"]) for s in spec["steps"]] == [("all foreground", True)]
    assert spec["dice_after"]["organ"] == 1.0 > spec["dice_before"]["organ"]


def test_a_step_that_changes_nothing_is_not_kept(tmp_path):
    refs = {f"case_{i}": (reference(shift=i) == 1).astype(np.uint8) for i in range(2)}
    folders, ref_paths = write_cases(tmp_path, dict(refs), refs)
    spec = determine_postprocessing(folders, ref_paths, {0: "background", 1: "organ"}, tmp_path / "pp.json")
    assert spec["apply"] == [] and spec["steps"][0]["kept"] is False


def test_region_models_are_judged_by_their_regions(tmp_path):
    # The whole tumour region {1, 2} of a region model: the organ and the lesion touch, so the
    # step for all foreground keeps both, and removes an island of label 2 far away.
    refs = {}
    for i in range(3):
        ref = np.zeros(SHAPE, dtype=np.uint8)
        ref[4 + i:12 + i, 4:12, 4:12] = 1
        ref[6 + i:9 + i, 6:9, 6:9] = 2
        refs[f"case_{i}"] = ref
    preds = {}
    for case, ref in refs.items():
        preds[case] = ref.copy()
        preds[case][20:22, 20:22, 20:22] = 2
    folders, ref_paths = write_cases(tmp_path, preds, refs)
    regions = {"whole": [1, 2], "core": [2]}
    spec = determine_postprocessing(folders, ref_paths, LABELS, tmp_path / "pp.json", regions=regions)
    assert spec["scored"] == "regions" and spec["classes"] == {"whole": [1, 2], "core": [2]}
    assert spec["steps"][0]["kept"] and spec["dice_after"] == {"whole": 1.0, "core": 1.0}
    assert [s["step"] for s in spec["steps"]] == ["all foreground", "whole", "core"]


def test_missing_folds_cases_are_an_error(tmp_path):
    refs = {f"case_{i}": reference() for i in range(2)}
    folders, ref_paths = write_cases(tmp_path, dict(refs), refs)
    with pytest.raises(ValueError, match=r"missing \['case_9'\]"):
        determine_postprocessing(folders, ref_paths, LABELS, tmp_path / "pp.json",
                                 expected=["case_0", "case_1", "case_9"])


def test_ignore_voxels_count_nowhere():
    labels = {0: "background", 1: "organ", 2: "ignore"}
    ref = np.zeros((6, 6, 6), dtype=np.int16)
    ref[0:2] = 1
    ref[4:6] = 2  # unannotated: a prediction there is no false positive
    pred = np.zeros_like(ref)
    pred[0:2] = 1
    pred[4:6] = 1
    classes = scoring_classes(labels)
    assert [c.name for c in classes] == ["organ"]
    assert case_dice(pred, ref, classes, ignore=2).tolist() == [1.0]


def test_apply_postprocessing_does_what_the_file_says(tmp_path):
    refs = {f"case_{i}": reference(shift=i) for i in range(4)}
    preds = {case: with_island(ref) for case, ref in refs.items()}
    folders, ref_paths = write_cases(tmp_path, preds, refs)
    determine_postprocessing(folders, ref_paths, LABELS, tmp_path / "postprocessing.json")
    spec = load_postprocessing(tmp_path / "postprocessing.json")

    new = with_island(reference(shift=5))
    new[23, 23, 23] = 2  # a stray lesion voxel: the lesion step was dropped, so it stays
    out = apply_postprocessing(new, spec)
    expected = reference(shift=5)
    expected[23, 23, 23] = 2
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == new.dtype and new[20, 20, 2] == 1  # the input is left alone

    # The same on files: the test-set rule's folder, affine and dtype kept.
    save_nifti(tmp_path / "test" / "new.nii.gz", new, AFFINE)
    written = postprocess_folder(tmp_path / "test", tmp_path / "test_postprocessed", tmp_path / "postprocessing.json")
    assert [p.name for p in written] == ["new.nii.gz"]
    labels, affine = load_label(written[0])
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(affine, AFFINE)


NNUNET_SCRIPT = '''
import json, sys
from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing
if __name__ == "__main__":
    plans = {"image_reader_writer": "NibabelIO", "label_manager": "LabelManager", "configurations": {}}
    dataset = {"labels": json.loads(sys.argv[3]), "file_ending": ".nii.gz"}
    _, kwargs = determine_postprocessing(sys.argv[1], sys.argv[2], plans, dataset, num_processes=1,
                                         keep_postprocessed_files=False)
    print("STEPS " + json.dumps([k["labels_or_regions"] for k in kwargs]))
'''


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius * radius


def _noisy_cases(seed: int, nested: bool, n: int = 6):
    """Three labels, apart (label 2 in two true parts in some cases) or nested like tumour labels;
    predictions with spurious islands of random labels and voxels missing along the edges."""
    from scipy import ndimage

    rng, shape = np.random.default_rng(seed), (32, 32, 24)
    refs, preds = {}, {}
    for i in range(n):
        ref = np.zeros(shape, np.uint8)
        if nested:
            centre = (14 + rng.integers(-2, 3), 14, 12)
            for value, radius in ((1, 8), (2, 5), (3, 2 + seed % 2)):
                ref[_ball(shape, centre, radius)] = value
        else:
            ref[_ball(shape, (10 + rng.integers(-2, 3), 10, 10), 6)] = 1
            ref[_ball(shape, (24, 22, 12 + rng.integers(-2, 3)), 4)] = 2
            if rng.random() < 0.5:
                ref[_ball(shape, (6, 26, 18), 3)] = 2
            ref[_ball(shape, (22, 8, 6), 3)] = 3
        pred = ref.copy()
        for _ in range(rng.integers(0, 4)):
            pred[_ball(shape, tuple(rng.integers(2, 22, 3)), rng.integers(1, 3))] = rng.integers(1, 4)
        edge = ndimage.binary_dilation(ref > 0) & ~ndimage.binary_erosion(ref > 0)
        pred[edge & (rng.random(shape) < 0.3)] = 0
        refs[f"c{i}"], preds[f"c{i}"] = ref, pred
    return preds, refs


@pytest.mark.nnunet
@pytest.mark.parametrize("seed,nested", [(1, False), (6, True)])  # about 50 s each (torch)
def test_the_same_steps_as_nnunet_itself(tmp_path, seed, nested, nnunet_python):
    """nnU-Net v2's determine_postprocessing (from `make bench-env`'s virtualenv) keeps the same
    steps as ours on the same files."""
    import subprocess

    python = nnunet_python
    preds, refs = _noisy_cases(seed, nested)
    folders, ref_paths = write_cases(tmp_path, preds, refs, folds=1)
    ours = determine_postprocessing(folders, ref_paths, {0: "background", 1: "a", 2: "b", 3: "c"},
                                    tmp_path / "postprocessing.json")
    (tmp_path / "nnunet.py").write_text(NNUNET_SCRIPT)
    labels = json.dumps({"background": 0, "a": 1, "b": 2, "c": 3})
    result = subprocess.run([str(python), str(tmp_path / "nnunet.py"), str(folders[0]), str(tmp_path / "labels"),
                             labels], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(result.stdout.split("STEPS ")[1])
    assert [step["labels"] for step in ours["apply"]] == [s if isinstance(s, list) else [s] for s in theirs]
    assert ours["apply"], "no step kept: the comparison would prove little"


def test_predictions_in_the_datasets_format_are_found(tmp_path):
    refs = {f"case_{i}": reference(shift=i) for i in range(4)}
    folders = [tmp_path / "predictions" / f"fold_{k}" for k in range(2)]
    ref_paths = {}
    for i, (case, ref) in enumerate(sorted(refs.items())):
        save_image(folders[i % 2] / f"{case}.mha", with_island(ref), AFFINE)
        ref_paths[case] = tmp_path / "labels" / f"{case}.mha"
        save_image(ref_paths[case], ref, AFFINE)
    spec = determine_postprocessing(folders, ref_paths, LABELS, tmp_path / "postprocessing.json",
                                    expected=sorted(refs), ending=".mha")
    assert spec["cases"] == 4 and {"operation": "keep_largest_component", "labels": [1]} in spec["apply"]
    with pytest.raises(ValueError, match=r"no \*.nii.gz files"):
        determine_postprocessing(folders, ref_paths, LABELS, tmp_path / "other.json")
