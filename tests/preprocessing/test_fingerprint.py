import json

import numpy as np
import pytest

from unet.io.demo import generate_demo
from unet.io.msd import load_dataset
from unet.io.images import load_image, load_label, voxel_spacing
from unet.io.nifti import save_nifti
from unet.io.orientation import Reorientation
from unet.preprocessing.fingerprint import SAMPLES_PER_CASE, compute_fingerprint, write_fingerprint

STAT_KEYS = {"mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5"}


def test_per_case_geometry(demo_dataset, demo_fingerprint):
    fp = demo_fingerprint
    assert fp["dataset"] == "demo" and fp["modalities"] == ["FLAIR", "T1gd"]
    assert fp["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumour",
                            "3": "enhancing tumour"}
    assert [c["id"] for c in fp["cases"]] == [c.id for c in demo_dataset.training]
    for case, entry in zip(demo_dataset.training, fp["cases"]):
        image, affine = load_image(case.image)
        reo = Reorientation.from_affine(affine)
        # Canonical axis order, not the file's.
        assert entry["spacing"] == pytest.approx(reo.spacing(voxel_spacing(affine)))
        assert tuple(entry["shape"]) == reo.shape(image.shape)
        assert all(0 < a <= b for a, b in zip(entry["shape_after_crop"], entry["shape"]))
        assert entry["crop_fraction"] == pytest.approx(
            np.prod(entry["shape_after_crop"]) / np.prod(entry["shape"]))
        assert 0.3 < entry["crop_fraction"] < 1.0   # the head fills part of the box
        assert entry["label_values"] == [0, 1, 2, 3]
        assert "_foreground" not in entry
    json.dumps(fp)


def test_intensity_statistics_per_channel(demo_dataset, demo_fingerprint):
    stats = demo_fingerprint["intensity"]
    assert len(stats) == 2
    foreground, means, weights = [], [], []
    for case in demo_dataset.training:
        image, _ = load_image(case.image)
        label, _ = load_label(case.label)
        fg = image[label > 0]
        foreground.append(fg)
        # At most SAMPLES_PER_CASE voxels per case: cases weigh min(n, 10,000), not n.
        means.append(fg.mean(axis=0))
        weights.append(min(len(fg), SAMPLES_PER_CASE))
    foreground = np.concatenate(foreground)
    expected_mean = np.average(means, axis=0, weights=weights)
    for c, s in enumerate(stats):
        assert set(s) == STAT_KEYS
        assert s["min"] <= s["percentile_00_5"] <= s["median"] <= s["percentile_99_5"] <= s["max"]
        assert s["mean"] == pytest.approx(expected_mean[c], rel=0.01)
        assert s["std"] == pytest.approx(foreground[:, c].std(), rel=0.1)
        assert foreground[:, c].min() <= s["min"] and s["max"] <= foreground[:, c].max()
    # The channels differ: T1gd has bright rim and dark core, a wider spread than FLAIR.
    assert stats[1]["std"] > stats[0]["std"]


def test_fingerprint_is_deterministic_and_workers_agree(demo_dataset, demo_fingerprint):
    assert compute_fingerprint(demo_dataset, workers=2, seed=0) == demo_fingerprint


def test_undeclared_label_value_names_the_file(tmp_path):
    root = generate_demo(tmp_path, n_train=2, n_test=0, seed=1)
    ds = load_dataset(root)
    bad = ds.training[1].label
    label, affine = load_label(bad)
    label[label == 2] = 7
    save_nifti(bad, label, affine, dtype=np.uint8)
    with pytest.raises(ValueError) as err:
        compute_fingerprint(ds)
    assert str(bad) in str(err.value)
    assert "[7]" in str(err.value)


def test_the_rule_writes_the_fingerprint_of_the_training_cases(demo_root, demo_fingerprint, tmp_path):
    fingerprint = write_fingerprint(demo_root, tmp_path / "fingerprint.json", workers=2)
    assert json.loads((tmp_path / "fingerprint.json").read_text()) == fingerprint
    assert fingerprint == demo_fingerprint  # the same statistics, whatever the number of workers
