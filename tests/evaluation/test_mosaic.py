import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unet.evaluation.mosaic import case_view, disagreement_slice, load_case_view, \
    plot_worst_cases, worst_case_mosaic, worst_cases
from unet.io.nifti import save_nifti

NAN = float("nan")
LABELS = {0: "background", 1: "edema", 2: "core"}


def rows(case, fold, dices, region_dice=0.0):
    out = [{"case": case, "fold": fold, "label": LABELS[v], "label_value": v, "dice": d}
           for v, d in zip((1, 2), dices)]
    out.append({"case": case, "fold": fold, "label": "tumour", "label_value": None,
                "dice": region_dice})
    return out


def test_worst_cases_by_mean_foreground_dice():
    df = pd.DataFrame(
        rows("a", 0, (0.9, 0.9)) + rows("b", 0, (0.2, NAN)) + rows("c", 1, (0.5, 0.1))
        + rows("d", 1, (NAN, NAN)) + rows("e", 1, (0.95, 0.87), region_dice=NAN)
        + rows("f", 0, (0.3, 0.3))
    ).astype({"label_value": "Int64"})
    chosen = worst_cases(df, n=4)
    # means over labels (nan left out, regions ignored): b 0.2, c 0.3, f 0.3, a 0.9, e 0.91
    assert chosen["case"].tolist() == ["b", "c", "f", "a"]  # ties broken by case id
    assert chosen["fold"].tolist() == [0, 1, 0, 0]
    assert chosen["mean_dice"].tolist() == pytest.approx([0.2, 0.3, 0.3, 0.9])
    assert worst_cases(df, n=2)["case"].tolist() == ["b", "c"]
    assert len(worst_cases(df, n=10)) == 5  # d has no defined Dice


def test_disagreement_slice():
    ref = np.zeros((6, 6, 8), dtype=np.int16)
    ref[1:4, 1:4, 2:6] = 1
    pred = ref.copy()
    pred[1:4, 1:4, 5] = 2     # 9 voxels wrong in z = 5
    pred[0, 0, 3] = 1         # 1 voxel wrong in z = 3
    assert disagreement_slice(pred, ref, axis=2) == 5
    assert disagreement_slice(pred, ref, axis=0) in (1, 2, 3)
    # no disagreement: the slice with the most foreground; nothing at all: the middle one
    same = np.zeros_like(ref)
    same[2, 2, 6] = 1
    same[1:3, 1:3, 1] = 1
    assert disagreement_slice(same, same, axis=2) == 1
    assert disagreement_slice(np.zeros_like(ref), np.zeros_like(ref), axis=2) == 4


def test_case_view_uses_the_anatomical_axial_axis():
    # The raw voxel order is (S, R, A): the axial (S) axis is the first array axis.
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    ref = np.zeros((7, 5, 6), dtype=np.int16)
    ref[2:5, 1:4, 1:5] = 1
    pred = ref.copy()
    pred[4, 1:4, 1:5] = 0     # the top slice (S index 4) is missed
    image = np.random.default_rng(0).random((7, 5, 6, 2)).astype(np.float32)
    view = case_view("c", 1, 0.8, image, ref, pred, affine)
    assert view.slice_index == 4
    # the slice is (A rows, R columns) and shows the disagreement
    assert view.ref.shape == (6, 5) and view.image.shape == (6, 5)
    assert view.ref.sum() == 12 and view.pred.sum() == 0
    np.testing.assert_array_equal(view.image, image[4, :, :, 0].T)
    assert view.aspect == 1.0  # R and A spacing are both 1 mm (S is 2 mm)
    coarse = case_view("c", 1, 0.8, image, ref, pred, affine @ np.diag([1.0, 1.0, 3.0, 1.0]))
    assert coarse.aspect == 3.0  # A (rows) is now 3 mm, R (columns) 1 mm


def save_case(tmp_path, case, image, ref, pred, affine=np.diag([1.0, 1.0, 2.5, 1.0])):
    paths = (tmp_path / "img" / f"{case}.nii.gz", tmp_path / "ref" / f"{case}.nii.gz",
             tmp_path / "pred" / f"{case}.nii.gz")
    save_nifti(paths[0], image, affine, dtype=np.float32)
    save_nifti(paths[1], ref, affine, dtype=np.uint8)
    save_nifti(paths[2], pred, affine, dtype=np.uint8)
    return paths


def synthetic_case(rng, shift):
    ref = np.zeros((20, 18, 10), dtype=np.int16)
    ref[5:14, 4:12, 2:8] = 1
    ref[8:11, 6:9, 3:6] = 2
    pred = np.roll(ref, shift, axis=0)
    image = (rng.normal(size=ref.shape + (2,)) + 3 * ref[..., None]).astype(np.float32)
    return image, ref, pred


def test_worst_case_mosaic_from_nifti(tmp_path):
    rng = np.random.default_rng(0)
    images, refs, preds, table = {}, {}, {}, []
    for i, shift in enumerate((0, 1, 3)):
        case = f"case_{i}"
        image, ref, pred = synthetic_case(rng, shift)
        images[case], refs[case], preds[(case, i % 2)] = save_case(tmp_path, case, image, ref, pred)
        table += rows(case, i % 2, (1.0 - 0.2 * shift, 1.0 - 0.3 * shift))
    df = pd.DataFrame(table).astype({"label_value": "Int64"})
    out = tmp_path / "evaluation" / "worst_cases.png"
    chosen = worst_case_mosaic(df, images, refs, preds, LABELS, out, n=2)
    assert chosen["case"].tolist() == ["case_2", "case_1"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as two_rows:
        height_two = two_rows.size[1]
    worst_case_mosaic(df, images, refs, preds, LABELS, out, n=3)
    with Image.open(out) as three_rows:
        assert three_rows.size[1] > height_two  # one row per case
    assert sorted(p.name for p in out.parent.iterdir()) == ["worst_cases.png"]


def test_load_case_view_checks_shapes(tmp_path):
    rng = np.random.default_rng(1)
    image, ref, pred = synthetic_case(rng, 2)
    paths = save_case(tmp_path, "c", image, ref, pred[:, :, :9])
    with pytest.raises(ValueError, match="shapes differ"):
        load_case_view("c", 0, 0.5, *paths)
    view = load_case_view("c", 0, 0.5, *save_case(tmp_path, "d", image, ref, pred))
    assert view.slice_index in range(2, 8)


def test_mosaic_without_cases_is_a_valid_png(tmp_path):
    plot_worst_cases([], LABELS, tmp_path / "none.png")
    assert (tmp_path / "none.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_prediction_is_named(tmp_path):
    df = pd.DataFrame(rows("ghost", 0, (0.1, 0.1))).astype({"label_value": "Int64"})
    with pytest.raises(ValueError, match="ghost"):
        worst_case_mosaic(df, {}, {}, {}, LABELS, tmp_path / "x.png")
