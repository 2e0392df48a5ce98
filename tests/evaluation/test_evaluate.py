import math

import numpy as np
import pandas as pd
import pytest

from unet.evaluation.evaluate import Region, evaluate_case, evaluate_folder, write_table
from unet.io.nifti import save_nifti

LABELS = {0: "background", 1: "edema", 2: "core"}


def two_label_case():
    """ref: label 1 in x 0..3 (4x4x4 = 64), label 2 in x 4..5 (2x4x4 = 32).
    pred: label 1 in x 0..1 (32), label 2 in x 2..5 (64)."""
    ref = np.zeros((8, 4, 4), dtype=np.int16)
    ref[0:4] = 1
    ref[4:6] = 2
    pred = np.zeros_like(ref)
    pred[0:2] = 1
    pred[2:6] = 2
    return pred, ref


def test_evaluate_case_label_rows_hand_computed():
    pred, ref = two_label_case()
    rows = evaluate_case("c1", pred, ref, LABELS, [])
    assert [r["label"] for r in rows] == ["edema", "core"]  # background skipped
    edema, core = rows
    # edema: TP 32, FP 0, FN 32 -> 64 / 96
    assert (edema["tp"], edema["fp"], edema["fn"]) == (32, 0, 32)
    assert edema["ref_voxels"] == 64 and edema["pred_voxels"] == 32
    assert edema["dice"] == pytest.approx(64 / 96)
    assert edema["label_value"] == 1 and edema["case"] == "c1"
    # core: TP 32, FP 32, FN 0 -> 64 / 96
    assert (core["tp"], core["fp"], core["fn"]) == (32, 32, 0)
    assert core["dice"] == pytest.approx(64 / 96)
    assert core["label_value"] == 2


def test_evaluate_case_region_row():
    pred, ref = two_label_case()
    rows = evaluate_case("c1", pred, ref, LABELS, [Region("tumour", (1, 2))])
    assert len(rows) == 3
    region = rows[-1]
    assert region["label"] == "tumour" and region["label_value"] is None
    # Union of labels 1 and 2 is x 0..5 in both: perfect overlap of 96 voxels.
    assert (region["tp"], region["fp"], region["fn"]) == (96, 0, 0)
    assert region["dice"] == 1.0


def test_evaluate_case_empty_conventions():
    ref = np.zeros((4, 4, 4), dtype=np.int16)
    ref[0, 0, 0] = 1  # label 1 present in ref only; label 2 absent from ref
    pred = np.zeros_like(ref)
    rows = evaluate_case("c", pred, ref, LABELS, [])
    assert rows[0]["dice"] == 0.0  # empty prediction, non-empty reference
    assert math.isnan(rows[1]["dice"])  # both empty
    pred[3, 3, 3] = 2
    rows = evaluate_case("c", pred, ref, LABELS, [])
    assert rows[1]["dice"] == 0.0  # empty reference, non-empty prediction


def test_evaluate_case_string_label_keys():
    # dataset.json stores label keys as strings.
    pred, ref = two_label_case()
    rows = evaluate_case("c", pred, ref, {"0": "background", "1": "edema", "2": "core"}, [])
    assert [(r["label"], r["label_value"]) for r in rows] == [("edema", 1), ("core", 2)]


def test_region_validation():
    assert Region("wt", [1, 2, 3]).labels == (1, 2, 3)
    with pytest.raises(ValueError):
        Region("empty", ())
    with pytest.raises(ValueError):
        Region("bg", (0, 1))


def write_pair(tmp_path, case, pred, ref):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    pred_dir = tmp_path / "pred"
    ref_dir = tmp_path / "ref"
    save_nifti(pred_dir / f"{case}.nii.gz", pred, affine, dtype=np.uint8)
    save_nifti(ref_dir / f"{case}.nii.gz", ref, affine, dtype=np.uint8)
    return pred_dir, ref_dir / f"{case}.nii.gz"


def test_evaluate_folder_on_nifti(tmp_path):
    pred, ref = two_label_case()
    pred_dir, ref_a = write_pair(tmp_path, "case_a", pred, ref)
    _, ref_b = write_pair(tmp_path, "case_b", ref, ref)  # perfect prediction
    df = evaluate_folder(pred_dir, {"case_a": ref_a, "case_b": ref_b}, LABELS,
                         [Region("tumour", (1, 2))], fold=3)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 6
    assert (df["fold"] == 3).all()
    assert list(df.columns[:5]) == ["case", "fold", "label", "label_value", "dice"]
    a = df[df["case"] == "case_a"].set_index("label")
    b = df[df["case"] == "case_b"].set_index("label")
    assert a.loc["edema", "dice"] == pytest.approx(64 / 96)
    assert a.loc["core", "dice"] == pytest.approx(64 / 96)
    assert a.loc["tumour", "dice"] == 1.0
    assert (b["dice"] == 1.0).all()
    assert pd.isna(a.loc["tumour", "label_value"])
    assert a.loc["core", "label_value"] == 2


def test_evaluate_folder_shape_mismatch_names_files(tmp_path):
    pred_dir = tmp_path / "pred"
    pred_path = pred_dir / "c.nii.gz"
    ref_path = tmp_path / "ref" / "c.nii.gz"
    save_nifti(pred_path, np.zeros((4, 4, 4), np.uint8), np.eye(4))
    save_nifti(ref_path, np.zeros((4, 4, 5), np.uint8), np.eye(4))
    with pytest.raises(ValueError) as err:
        evaluate_folder(pred_dir, {"c": ref_path}, LABELS, [], fold=0)
    msg = str(err.value)
    assert str(pred_path) in msg and str(ref_path) in msg


def test_evaluate_folder_missing_reference(tmp_path):
    pred_dir = tmp_path / "pred"
    save_nifti(pred_dir / "lonely.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="lonely"):
        evaluate_folder(pred_dir, {}, LABELS, [], fold=0)


def test_write_table_csv_roundtrip(tmp_path):
    pred, ref = two_label_case()
    pred_dir, ref_a = write_pair(tmp_path, "case_a", pred, ref)
    df = evaluate_folder(pred_dir, {"case_a": ref_a}, LABELS, [Region("tumour", (1, 2))], fold=1)
    out = tmp_path / "evaluation" / "fold_1.csv"
    write_table(df, out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("case,fold,label,label_value,dice")
    # Label values are written as ints, the region's as an empty field.
    assert lines[1].startswith("case_a,1,edema,1,")
    assert lines[3].startswith("case_a,1,tumour,,1.0")
    back = pd.read_csv(out)
    assert back["dice"].tolist() == pytest.approx(df["dice"].tolist())
    assert [p.name for p in out.parent.iterdir()] == ["fold_1.csv"]  # no temp file left
