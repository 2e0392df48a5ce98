import json

import numpy as np
import pandas as pd
import pytest

from unet.evaluation.summary import METRICS, summarize, summary_tables, write_summary_html

NAN = float("nan")


def table(fold, rows):
    """rows: (case, label, label_value, dice, hd95)."""
    return pd.DataFrame([{"case": c, "fold": fold, "label": l, "label_value": v, "dice": d,
                          "hd95": h}
                         for c, l, v, d, h in rows]).astype({"label_value": "Int64"})


@pytest.fixture
def tables():
    t0 = table(0, [
        ("a", "edema", 1, 0.8, 2.0), ("a", "core", 2, 0.6, 4.0), ("a", "wt", None, 0.9, 1.0),
        ("b", "edema", 1, 0.6, 6.0), ("b", "core", 2, NAN, NAN), ("b", "wt", None, 0.7, 3.0),
    ])
    t1 = table(1, [
        ("c", "edema", 1, 0.4, 10.0), ("c", "core", 2, 0.0, NAN), ("c", "wt", None, 0.5, 5.0),
        ("d", "edema", 1, NAN, NAN), ("d", "core", 2, 0.2, 8.0), ("d", "wt", None, NAN, NAN),
    ])
    return [t0, t1]


def test_label_means_exclude_nan(tables):
    s = summarize(tables)
    assert s["metrics"] == ["dice", "hd95"]  # the METRICS the tables have
    edema = s["labels"]["edema"]
    assert edema["label_value"] == 1
    dice0 = edema["folds"]["0"]["dice"]
    assert dice0["mean"] == pytest.approx(0.7)
    assert dice0["std"] == pytest.approx(0.1)
    assert dice0["median"] == pytest.approx(0.7)
    assert dice0["n_excluded"] == 0
    dice1 = edema["folds"]["1"]["dice"]
    assert dice1["mean"] == pytest.approx(0.4)
    assert dice1["n_cases"] == 2 and dice1["n_excluded"] == 1
    # across folds: mean of 0.8, 0.6, 0.4 (nan left out)
    assert edema["all"]["dice"]["mean"] == pytest.approx(0.6)
    assert edema["all"]["dice"]["std"] == pytest.approx(np.std([0.8, 0.6, 0.4]))
    assert edema["all"]["dice"]["n_cases"] == 4 and edema["all"]["dice"]["n_excluded"] == 1
    core = s["labels"]["core"]
    assert core["folds"]["0"]["dice"]["mean"] == pytest.approx(0.6)
    assert core["folds"]["0"]["dice"]["std"] == pytest.approx(0.0)
    assert core["all"]["dice"]["mean"] == pytest.approx(0.8 / 3)
    assert core["all"]["dice"]["n_excluded"] == 1
    assert list(s["labels"]) == ["edema", "core"]


def test_exclusions_are_counted_per_metric(tables):
    s = summarize(tables)
    core = s["labels"]["core"]["all"]
    # core: Dice nan once (b), HD95 nan twice (b, and c whose prediction was empty)
    assert core["dice"]["n_excluded"] == 1
    assert core["hd95"]["n_excluded"] == 2
    assert core["hd95"]["mean"] == pytest.approx(6.0)  # (4 + 8) / 2
    assert core["hd95"]["median"] == pytest.approx(6.0)
    edema = s["labels"]["edema"]
    assert edema["all"]["hd95"]["mean"] == pytest.approx(6.0)  # (2 + 6 + 10) / 3
    assert edema["all"]["hd95"]["median"] == pytest.approx(6.0)
    assert edema["folds"]["1"]["hd95"]["mean"] == pytest.approx(10.0)
    assert edema["folds"]["1"]["hd95"]["std"] == pytest.approx(0.0)


def test_regions_separate_from_labels(tables):
    s = summarize(tables)
    assert list(s["regions"]) == ["wt"]
    assert "wt" not in s["labels"]
    wt = s["regions"]["wt"]
    assert wt["all"]["dice"]["mean"] == pytest.approx(0.7)
    assert wt["folds"]["1"]["dice"]["mean"] == pytest.approx(0.5)
    assert wt["all"]["dice"]["n_excluded"] == 1
    assert wt["all"]["hd95"]["mean"] == pytest.approx(3.0)


def test_region_sharing_a_label_name_stays_separate():
    t = table(0, [("a", "et", 3, 0.5, 1.0), ("a", "et", None, 0.9, 2.0)])
    s = summarize([t])
    assert s["labels"]["et"]["all"]["dice"]["mean"] == pytest.approx(0.5)
    assert s["regions"]["et"]["all"]["dice"]["mean"] == pytest.approx(0.9)


def test_mean_foreground_over_labels_only(tables):
    s = summarize(tables)
    mfd = s["mean_foreground_dice"]
    assert mfd["all"] == pytest.approx((0.6 + 0.8 / 3) / 2)
    assert mfd["folds"]["0"] == pytest.approx((0.7 + 0.6) / 2)
    assert mfd["folds"]["1"] == pytest.approx((0.4 + 0.1) / 2)
    assert s["mean_foreground"]["dice"] == mfd
    assert s["mean_foreground"]["hd95"]["all"] == pytest.approx((6.0 + 6.0) / 2)
    assert s["mean_foreground"]["hd95"]["folds"]["0"] == pytest.approx((4.0 + 4.0) / 2)


def test_convention_follows_the_setting(tables):
    nan = summarize(tables)
    one = summarize(tables, empty="one")
    assert nan["empty"] == "nan" and one["empty"] == "one"
    assert "nnU-Net" in nan["convention"] and "BraTS" in one["convention"]
    assert "nan when the reference or the prediction is empty" in one["convention"]
    with pytest.raises(ValueError, match="evaluate.empty"):
        summarize(tables, empty="zero")


def test_json_serialisable_with_nan_as_none():
    t = table(0, [("a", "edema", 1, NAN, NAN), ("a", "core", 2, 0.5, 1.0)])
    s = summarize([t])
    text = json.dumps(s, allow_nan=False)  # fails on nan or numpy types
    assert "NaN" not in text
    stats = s["labels"]["edema"]["all"]["dice"]
    assert stats["mean"] is None and stats["std"] is None and stats["median"] is None
    assert stats["n_excluded"] == 1
    assert type(s["labels"]["core"]["all"]["dice"]["n_cases"]) is int
    assert s["mean_foreground_dice"]["all"] == pytest.approx(0.5)
    assert isinstance(s["convention"], str) and "nan" in s["convention"]


def test_summary_from_csv_roundtrip(tables, tmp_path):
    # Tables read back from fold CSVs (label_value and nan empty fields) give the same summary.
    read = []
    for i, t in enumerate(tables):
        t.to_csv(tmp_path / f"fold_{i}.csv", index=False)
        read.append(pd.read_csv(tmp_path / f"fold_{i}.csv"))
    assert summarize(read) == summarize(tables)


def test_every_metric_of_a_full_table_is_summarised():
    row = {"case": "a", "fold": 0, "label": "edema", "label_value": 1,
           **{m: float(i + 1) for i, m in enumerate(METRICS)}}
    s = summarize([pd.DataFrame([row])])
    assert s["metrics"] == list(METRICS)
    for i, m in enumerate(METRICS):
        assert s["labels"]["edema"]["all"][m]["mean"] == float(i + 1)
    assert set(s["mean_foreground"]) == {"dice", "iou", "hd95", "hd", "asd"}


def test_empty_input():
    s = summarize([])
    assert s["labels"] == {} and s["mean_foreground_dice"]["all"] is None
    assert "convention" in s


def test_summary_html_holds_the_numbers(tables, tmp_path):
    s = summarize(tables)
    across, per_fold = summary_tables(s)
    assert list(across.index) == ["edema", "core", "wt (region)"]
    assert across.loc["edema", "Dice"] == "0.600 ± 0.163 (1 of 4 left out)"
    assert across.loc["core", "HD95 (mm)"] == "6.00 ± 2.00 (2 of 4 left out)"
    assert per_fold.loc["edema", "fold 0"] == "0.700 ± 0.100"
    out = tmp_path / "summary.html"
    write_summary_html(s, out)
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "0.600 ± 0.163" in text and "wt (region)" in text
    write_summary_html(summarize([]), tmp_path / "empty.html")
    assert "no cases" in (tmp_path / "empty.html").read_text()
