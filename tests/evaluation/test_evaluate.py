import math

import numpy as np
import pandas as pd
import pytest

from unet.evaluation.distances import average_surface_distance, hausdorff, hd95
from unet.evaluation.evaluate import COLUMNS, Region, evaluate_case, evaluate_fold, evaluate_folder, \
    evaluation_regions, write_table
from unet.io.atomic import write_json
from unet.io.demo import generate_demo
from unet.io.msd import DatasetError, load_dataset, write_dataset_json
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
    # edema: TP 32, FP 0, FN 32 -> Dice 64 / 96, IoU 32 / 64
    assert (edema["tp"], edema["fp"], edema["fn"]) == (32, 0, 32)
    assert edema["ref_voxels"] == 64 and edema["pred_voxels"] == 32
    assert edema["dice"] == pytest.approx(64 / 96)
    assert edema["iou"] == pytest.approx(0.5)
    assert edema["label_value"] == 1 and edema["case"] == "c1"
    # 1 mm isotropic by default: 64 voxels = 0.064 ml
    assert edema["ref_volume_ml"] == pytest.approx(0.064)
    assert edema["pred_volume_ml"] == pytest.approx(0.032)
    # core: TP 32, FP 32, FN 0 -> 64 / 96
    assert (core["tp"], core["fp"], core["fn"]) == (32, 32, 0)
    assert core["dice"] == pytest.approx(64 / 96)
    assert core["label_value"] == 2


def test_evaluate_case_distances_use_the_spacing():
    # Label 1: ref is x 0..3, pred x 0..1, each spanning the whole y-z cross-section.
    # Along x the prediction ends 2 voxels early; the last face of ref is 2 voxels (2 x 3 mm)
    # from the last face of pred.
    pred, ref = two_label_case()
    spacing = (3.0, 0.5, 0.5)
    edema = evaluate_case("c", pred, ref, LABELS, [], spacing=spacing)[0]
    assert edema["hd"] == pytest.approx(6.0)
    assert edema["hd"] == pytest.approx(hausdorff(pred == 1, ref == 1, spacing))
    assert edema["hd95"] == pytest.approx(hd95(pred == 1, ref == 1, spacing))
    assert edema["asd"] == pytest.approx(average_surface_distance(pred == 1, ref == 1, spacing))
    assert edema["hd95"] <= edema["hd"]
    assert edema["ref_volume_ml"] == pytest.approx(64 * 0.75 / 1000)
    isotropic = evaluate_case("c", pred, ref, LABELS, [])[0]
    assert isotropic["hd"] == pytest.approx(2.0)


def test_evaluate_case_region_row():
    pred, ref = two_label_case()
    rows = evaluate_case("c1", pred, ref, LABELS, [Region("tumour", (1, 2))])
    assert len(rows) == 3
    region = rows[-1]
    assert region["label"] == "tumour" and region["label_value"] is None
    # Union of labels 1 and 2 is x 0..5 in both: perfect overlap of 96 voxels.
    assert (region["tp"], region["fp"], region["fn"]) == (96, 0, 0)
    assert region["dice"] == 1.0 and region["iou"] == 1.0
    assert region["hd95"] == 0.0 and region["asd"] == 0.0


def test_evaluate_case_empty_conventions():
    ref = np.zeros((4, 4, 4), dtype=np.int16)
    ref[0, 0, 0] = 1  # label 1 present in ref only; label 2 absent from ref
    pred = np.zeros_like(ref)
    for empty, both_empty in (("nan", math.nan), ("one", 1.0)):
        edema, core = evaluate_case("c", pred, ref, LABELS, [], empty=empty)
        assert edema["dice"] == 0.0 and edema["iou"] == 0.0  # empty prediction
        if math.isnan(both_empty):
            assert math.isnan(core["dice"]) and math.isnan(core["iou"])
        else:
            assert core["dice"] == 1.0 and core["iou"] == 1.0
        # distances are undefined when either mask is empty, under both conventions
        for row in (edema, core):
            assert all(math.isnan(row[k]) for k in ("hd95", "hd", "asd"))
    pred[3, 3, 3] = 2
    _, core = evaluate_case("c", pred, ref, LABELS, [], empty="one")
    assert core["dice"] == 0.0  # empty reference, non-empty prediction
    with pytest.raises(ValueError, match="evaluate.empty"):
        evaluate_case("c", pred, ref, LABELS, [], empty="zero")


def test_evaluate_case_empty_case():
    zeros = np.zeros((3, 3, 3), dtype=np.int16)
    rows = evaluate_case("c", zeros, zeros, LABELS, [Region("tumour", (1, 2))])
    assert len(rows) == 3
    assert all(math.isnan(r["dice"]) and r["tp"] == r["fp"] == r["fn"] == 0 for r in rows)


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


def test_evaluation_regions_prefers_config_then_dataset():
    dataset = {"whole tumour": (1, 2, 3)}
    assert evaluation_regions({"core": [2, 3]}, dataset) == [Region("core", (2, 3))]
    assert evaluation_regions({}, dataset) == []  # an explicit empty mapping means no regions
    assert evaluation_regions(None, dataset) == [Region("whole tumour", (1, 2, 3))]
    assert evaluation_regions(None, {}) == []


def test_dataset_json_regions_are_read(tmp_path):
    write_dataset_json(tmp_path, "d", ["T1"], {0: "background", 1: "a", 2: "b"}, ["c1"], [],
                       extra={"regions": {"a or b": [1, 2]}})
    dataset = load_dataset(tmp_path)
    assert dataset.regions == {"a or b": (1, 2)}
    assert evaluation_regions(None, dataset.regions) == [Region("a or b", (1, 2))]
    write_dataset_json(tmp_path, "d", ["T1"], {0: "background", 1: "a"}, ["c1"], [])
    assert load_dataset(tmp_path).regions == {}
    write_dataset_json(tmp_path, "d", ["T1"], {0: "background", 1: "a"}, ["c1"], [],
                       extra={"regions": {"bad": [1, 4]}})
    with pytest.raises(DatasetError, match="dataset.json.*'bad'.*\\[4\\]"):
        load_dataset(tmp_path)


def write_pair(tmp_path, case, pred, ref, affine=np.diag([1.0, 1.0, 2.0, 1.0])):
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
    assert list(df.columns) == COLUMNS
    assert (df["fold"] == 3).all()
    assert list(df.columns[:5]) == ["case", "fold", "label", "label_value", "dice"]
    a = df[df["case"] == "case_a"].set_index("label")
    b = df[df["case"] == "case_b"].set_index("label")
    assert a.loc["edema", "dice"] == pytest.approx(64 / 96)
    assert a.loc["core", "dice"] == pytest.approx(64 / 96)
    assert a.loc["tumour", "dice"] == 1.0
    assert (b["dice"] == 1.0).all() and (b["hd95"] == 0.0).all()
    assert pd.isna(a.loc["tumour", "label_value"])
    assert a.loc["core", "label_value"] == 2
    # The affine's spacing (1, 1, 2) mm: 2 mm^3 voxels; label 1's faces 2 voxels apart along x.
    assert a.loc["edema", "ref_volume_ml"] == pytest.approx(64 * 2 / 1000)
    assert a.loc["edema", "hd"] == pytest.approx(2.0)
    assert a.loc["edema", "hd95"] == pytest.approx(hd95(pred == 1, ref == 1, (1.0, 1.0, 2.0)))


def test_evaluate_folder_reads_spacing_from_the_reference(tmp_path):
    pred, ref = two_label_case()
    pred_dir, ref_path = write_pair(tmp_path, "c", pred, ref, affine=np.diag([3.0, 1.0, 1.0, 1.0]))
    df = evaluate_folder(pred_dir, {"c": ref_path}, LABELS, [], fold=0, empty="one")
    assert df.set_index("label").loc["edema", "hd"] == pytest.approx(6.0)


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
    pred[:] = 0  # empty prediction: label rows without distances
    pred_dir, ref_a = write_pair(tmp_path, "case_a", pred, ref)
    df = evaluate_folder(pred_dir, {"case_a": ref_a}, LABELS, [Region("tumour", (1, 2))], fold=1)
    out = tmp_path / "evaluation" / "fold_1.csv"
    write_table(df, out)
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    # Label values are written as ints, the region's as an empty field; nan distances as empty.
    assert lines[1].startswith("case_a,1,edema,1,0.0,0.0,,,,")
    assert lines[3].startswith("case_a,1,tumour,,0.0,0.0,,,,")
    back = pd.read_csv(out)
    pd.testing.assert_frame_equal(back.drop(columns="label_value"),
                                  df.drop(columns="label_value"), check_dtype=False)
    assert [p.name for p in out.parent.iterdir()] == ["fold_1.csv"]  # no temp file left


def test_evaluate_folder_refuses_predictions_that_do_not_match_the_fold(tmp_path):
    """A missing prediction must not turn into a mean over fewer cases, nor an extra one sneak in."""
    pred, ref = two_label_case()
    pred_dir, ref_a = write_pair(tmp_path, "case_a", pred, ref)
    _, ref_b = write_pair(tmp_path, "case_b", ref, ref)
    refs = {"case_a": ref_a, "case_b": ref_b, "case_c": ref_b}
    df = evaluate_folder(pred_dir, refs, LABELS, [], fold=1, expected=["case_a", "case_b"])
    assert sorted(set(df["case"])) == ["case_a", "case_b"]
    with pytest.raises(ValueError, match=r"missing \['case_c'\]") as err:
        evaluate_folder(pred_dir, refs, LABELS, [], fold=1, expected=["case_a", "case_b", "case_c"])
    assert str(pred_dir) in str(err.value) and "fold 1" in str(err.value)
    with pytest.raises(ValueError, match=r"not in the fold \['case_b'\]"):
        evaluate_folder(pred_dir, refs, LABELS, [], fold=1, expected=["case_a"])


def test_voxels_of_the_ignore_label_count_in_no_row():
    """nnU-Net v2's sparse annotation: the reference's ignore-label voxels (value 3 here) are
    left out of reference and prediction alike, and the ignore label gets no row."""
    pred, ref = two_label_case()
    ref[:, 2:] = 3  # half of every x slice unannotated
    labels = {**LABELS, 3: "ignore"}
    rows = evaluate_case("c1", pred, ref, labels, [Region("tumour", (1, 2))])
    assert [r["label"] for r in rows] == ["edema", "core", "tumour"]
    edema, core, tumour = rows
    # Only the annotated half (y < 2) counts: every count of two_label_case halves.
    assert (edema["tp"], edema["fp"], edema["fn"]) == (16, 0, 16)
    assert (core["tp"], core["fp"], core["fn"]) == (16, 16, 0)  # no false positive from the ignored half
    assert edema["pred_voxels"] == 16 and core["pred_voxels"] == 32
    assert (tumour["tp"], tumour["fp"], tumour["fn"]) == (48, 0, 0)
    # The same as scoring the annotated half alone, distances included.
    half = evaluate_case("c1", pred[:, :2], ref[:, :2], LABELS, [Region("tumour", (1, 2))])
    for row, expected in zip(rows, half):
        for key in ("dice", "iou", "tp", "fp", "fn"):
            assert row[key] == pytest.approx(expected[key]), key
    # Without the ignore label declared, value 3 is just an undeclared value: core's FP rise.
    plain = evaluate_case("c1", pred, ref, LABELS, [])
    assert plain[1]["fp"] == 32 + 16


def test_the_ignore_label_of_a_plan_keeps_its_name_for_evaluation():
    from unet.preprocessing.plan import Plan

    plan = Plan(dataset="t", modalities=("a",), labels={0: "background", 1: "a", 2: "ignore"}, spacing=(1.0,) * 3,
                patch_size=(8,) * 3, batch_size=2, filters=(4,), strides=((1, 1, 1),), kernels=((3, 3, 3),),
                normalization=())
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[:2] = 2
    pred = np.ones_like(ref)
    (row,) = evaluate_case("c", pred, ref, plan.labels)  # what the evaluate stage passes
    assert row["label"] == "a" and row["fp"] == 32 and row["pred_voxels"] == 32


def test_evaluate_fold_scores_the_folds_cases_by_the_plans_labels(tmp_path, capsys):
    from unet.preprocessing.plan import Plan

    dataset = load_dataset(generate_demo(tmp_path / "demo", n_train=3, n_test=0))
    write_json(tmp_path / "splits.json", [{"train": ["DEMO_002"], "val": ["DEMO_000", "DEMO_001"]},
                                          {"train": ["DEMO_000", "DEMO_001"], "val": ["DEMO_002"]}])
    # Labels from the plan, not from dataset.json: here only one of the demo's three.
    plan = Plan(dataset="demo", modalities=("FLAIR", "T1gd"), labels={0: "background", 1: "oedema"},
                spacing=(1.0,) * 3, patch_size=(8,) * 3, batch_size=2, filters=(4,), strides=((1, 1, 1),),
                kernels=((3, 3, 3),), normalization=())
    write_json(tmp_path / "plans.json", plan.to_json())
    (tmp_path / "pred").mkdir()
    case = dataset.case("DEMO_002")
    (tmp_path / "pred" / case.label.name).write_bytes(case.label.read_bytes())  # a perfect prediction
    run = dict(plans=tmp_path / "plans.json", empty="one")

    table = evaluate_fold(tmp_path / "pred", tmp_path / "splits.json", 1, tmp_path / "demo",
                          tmp_path / "fold_1.csv", **run)
    assert table["label"].tolist() == ["oedema", "whole tumour", "tumour core", "enhancing tumour"]
    assert (table["case"] == "DEMO_002").all() and (table["fold"] == 1).all() and (table["dice"] == 1.0).all()
    assert pd.read_csv(tmp_path / "fold_1.csv")["label"].tolist() == table["label"].tolist()
    assert "empty structures: one" in capsys.readouterr().out

    table = evaluate_fold(tmp_path / "pred", tmp_path / "splits.json", 1, tmp_path / "demo",
                          tmp_path / "fold_1.csv", regions={"tumour": [1, 2, 3]}, **run)
    assert table["label"].tolist() == ["oedema", "tumour"]  # configured regions replace the dataset's
    with pytest.raises(ValueError, match="missing \\['DEMO_000', 'DEMO_001'\\]"):
        evaluate_fold(tmp_path / "pred", tmp_path / "splits.json", 0, tmp_path / "demo",
                      tmp_path / "fold_0.csv", **run)
