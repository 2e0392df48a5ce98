import json
import math

import numpy as np
import pandas as pd
import pytest

from unet.evaluation.plots import plot_dice
from unet.evaluation.summary import summarize

NAN = float("nan")


def table(fold, rows):
    """rows: (case, label, label_value, dice)."""
    return pd.DataFrame([{"case": c, "fold": fold, "label": l, "label_value": v, "dice": d}
                         for c, l, v, d in rows]).astype({"label_value": "Int64"})


@pytest.fixture
def tables():
    t0 = table(0, [
        ("a", "edema", 1, 0.8), ("a", "core", 2, 0.6), ("a", "wt", None, 0.9),
        ("b", "edema", 1, 0.6), ("b", "core", 2, NAN), ("b", "wt", None, 0.7),
    ])
    t1 = table(1, [
        ("c", "edema", 1, 0.4), ("c", "core", 2, 0.0), ("c", "wt", None, 0.5),
        ("d", "edema", 1, NAN), ("d", "core", 2, 0.2), ("d", "wt", None, NAN),
    ])
    return [t0, t1]


def test_label_means_exclude_nan(tables):
    s = summarize(tables)
    edema = s["labels"]["edema"]
    assert edema["label_value"] == 1
    assert edema["folds"]["0"]["mean"] == pytest.approx(0.7)
    assert edema["folds"]["0"]["std"] == pytest.approx(0.1)
    assert edema["folds"]["0"]["n_excluded"] == 0
    assert edema["folds"]["1"]["mean"] == pytest.approx(0.4)
    assert edema["folds"]["1"]["n_cases"] == 2 and edema["folds"]["1"]["n_excluded"] == 1
    # across folds: mean of 0.8, 0.6, 0.4 (nan left out)
    assert edema["all"]["mean"] == pytest.approx(0.6)
    assert edema["all"]["std"] == pytest.approx(np.std([0.8, 0.6, 0.4]))
    assert edema["all"]["n_cases"] == 4 and edema["all"]["n_excluded"] == 1
    core = s["labels"]["core"]
    assert core["folds"]["0"]["mean"] == pytest.approx(0.6)
    assert core["folds"]["0"]["std"] == pytest.approx(0.0)
    assert core["all"]["mean"] == pytest.approx(0.8 / 3)
    assert core["all"]["n_excluded"] == 1
    assert list(s["labels"]) == ["edema", "core"]


def test_regions_separate_from_labels(tables):
    s = summarize(tables)
    assert list(s["regions"]) == ["wt"]
    assert "wt" not in s["labels"]
    wt = s["regions"]["wt"]
    assert wt["all"]["mean"] == pytest.approx(0.7)
    assert wt["folds"]["1"]["mean"] == pytest.approx(0.5)
    assert wt["all"]["n_excluded"] == 1


def test_mean_foreground_dice_over_labels_only(tables):
    s = summarize(tables)
    mfd = s["mean_foreground_dice"]
    assert mfd["all"] == pytest.approx((0.6 + 0.8 / 3) / 2)
    assert mfd["folds"]["0"] == pytest.approx((0.7 + 0.6) / 2)
    assert mfd["folds"]["1"] == pytest.approx((0.4 + 0.1) / 2)


def test_json_serialisable_with_nan_as_none():
    t = table(0, [("a", "edema", 1, NAN), ("a", "core", 2, 0.5)])
    s = summarize([t])
    text = json.dumps(s, allow_nan=False)  # fails on nan or numpy types
    assert "NaN" not in text
    assert s["labels"]["edema"]["all"]["mean"] is None
    assert s["labels"]["edema"]["all"]["std"] is None
    assert s["labels"]["edema"]["all"]["n_excluded"] == 1
    assert type(s["labels"]["core"]["all"]["n_cases"]) is int
    assert s["mean_foreground_dice"]["all"] == pytest.approx(0.5)
    assert isinstance(s["convention"], str) and "nan" in s["convention"]


def test_summary_from_csv_roundtrip(tables, tmp_path):
    # Tables read back from fold CSVs (label_value empty for regions) give the same summary.
    read = []
    for i, t in enumerate(tables):
        t.to_csv(tmp_path / f"fold_{i}.csv", index=False)
        read.append(pd.read_csv(tmp_path / f"fold_{i}.csv"))
    assert summarize(read) == summarize(tables)


def test_empty_input():
    s = summarize([])
    assert s["labels"] == {} and s["mean_foreground_dice"]["all"] is None


def test_plot_dice_writes_png(tables, tmp_path):
    df = pd.concat(tables, ignore_index=True)
    out = tmp_path / "plots" / "dice.png"
    plot_dice(df, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000
    assert [p.name for p in out.parent.iterdir()] == ["dice.png"]


def test_plot_dice_empty_table(tmp_path):
    out = tmp_path / "empty.png"
    plot_dice(pd.DataFrame(columns=["case", "fold", "label", "label_value", "dice"]), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
