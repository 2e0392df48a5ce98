import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unet.evaluation.plots import plot_dice, plot_metric, structure_groups

NAN = float("nan")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cases():
    rows = []
    for fold, case in ((0, "a"), (0, "b"), (1, "c"), (1, "d")):
        rows += [
            {"case": case, "fold": fold, "label": "edema", "label_value": 1, "dice": 0.8,
             "hd95": 3.0},
            {"case": case, "fold": fold, "label": "et", "label_value": 3,
             "dice": NAN if case == "d" else 0.6, "hd95": NAN if case in "cd" else 7.5},
            {"case": case, "fold": fold, "label": "et", "label_value": None, "dice": 0.9,
             "hd95": 1.0},
        ]
    return pd.DataFrame(rows).astype({"label_value": "Int64"})


def test_structure_groups_keep_labels_and_regions_apart(cases):
    groups = structure_groups(cases)
    assert [name for name, _ in groups] == ["edema", "et", "et (region)"]
    assert [len(g) for _, g in groups] == [4, 4, 4]
    assert groups[1][1]["label_value"].notna().all()
    assert groups[2][1]["label_value"].isna().all()


@pytest.mark.parametrize("metric", ["dice", "hd95"])
def test_plot_metric_writes_png(cases, tmp_path, metric):
    out = tmp_path / "plots" / f"{metric}.png"
    plot_metric(cases, metric, out)
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    with Image.open(out) as image:
        assert image.size[0] >= 400 and image.size[1] == 450  # 4.5 in at 100 dpi
    assert [p.name for p in out.parent.iterdir()] == [f"{metric}.png"]  # no temp file left


def test_plot_dice_and_all_nan_metric(cases, tmp_path):
    plot_dice(cases, tmp_path / "dice.png")
    assert (tmp_path / "dice.png").read_bytes()[:8] == PNG
    cases["asd"] = NAN  # e.g. every prediction empty: nothing to draw, still a valid figure
    plot_metric(cases, "asd", tmp_path / "asd.png")
    assert (tmp_path / "asd.png").read_bytes()[:8] == PNG


def test_plot_empty_table(tmp_path):
    out = tmp_path / "empty.png"
    plot_metric(pd.DataFrame(columns=["case", "fold", "label", "label_value", "dice"]), "dice", out)
    assert out.read_bytes()[:8] == PNG
