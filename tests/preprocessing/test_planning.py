import copy
import json

import numpy as np
import pytest

from unet.io.atomic import write_json
from unet.preprocessing.planning import (MAX_POOLS, MIN_FEATURE_SIZE, Plan, make_plans,
                                         target_spacing, topology)


def total_stride(strides):
    return tuple(int(s) for s in np.prod(np.array(strides), axis=0))


# --- target spacing ---------------------------------------------------------------------------

def test_target_spacing_is_the_median():
    spacings = np.array([[1.0, 1.0, 1.0], [1.2, 0.8, 1.5], [0.8, 1.1, 2.0], [0.9, 0.9, 1.2]])
    assert target_spacing(spacings) == pytest.approx((0.95, 0.95, 1.35))


def test_target_spacing_mildly_anisotropic_keeps_median():
    spacings = np.array([[0.9, 0.9, 1.8], [1.0, 1.0, 2.2], [0.9, 0.9, 2.5]])  # ratio 2.2 < 3
    assert target_spacing(spacings) == pytest.approx((0.9, 0.9, 2.2))


def test_target_spacing_anisotropic_coarse_axis_takes_10th_percentile():
    z = [5.0, 2.5, 5.0, 4.0, 6.5, 5.0, 4.5, 5.0, 6.0, 5.0]
    xy = [0.70, 0.68, 0.72, 0.70, 0.75, 0.65, 0.70, 0.71, 0.69, 0.70]
    spacings = np.array([[a, a, c] for a, c in zip(xy, z)])
    # sorted z: 2.5 4 4.5 5 ...; 10th percentile at rank 0.9: 2.5 + 0.9 * (4 - 2.5) = 3.85
    assert target_spacing(spacings) == pytest.approx((0.70, 0.70, 3.85))


def test_target_spacing_coarse_axis_may_be_first():
    spacings = np.array([[4.0, 1.0, 1.0], [5.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    # 10th percentile of (4, 5, 6): 4 + 0.2 * 1 = 4.2
    assert target_spacing(spacings) == pytest.approx((4.2, 1.0, 1.0))


# --- topology ---------------------------------------------------------------------------------

def test_topology_isotropic_128():
    patch, strides, kernels = topology((128, 128, 128), (1.0, 1.0, 1.0))
    assert patch == (128, 128, 128)
    assert len(strides) == MAX_POOLS + 1 == 6
    assert strides[0] == (1, 1, 1)
    assert all(s == (2, 2, 2) for s in strides[1:])
    assert all(k == (3, 3, 3) for k in kernels) and len(kernels) == len(strides)
    assert total_stride(strides) == (32, 32, 32)
    assert all(p % t == 0 for p, t in zip(patch, total_stride(strides)))


def test_topology_caps_pools_at_max_pools():
    patch, strides, _ = topology((256, 256, 256), (1.0, 1.0, 1.0))
    assert len(strides) - 1 == MAX_POOLS
    assert total_stride(strides) == (2 ** MAX_POOLS,) * 3
    assert patch == (256, 256, 256)


def test_topology_stops_at_min_feature_size_per_axis():
    patch, strides, kernels = topology((128, 64, 32), (1.0, 1.0, 1.0))
    # An axis is pooled while its size is >= 2 * MIN_FEATURE_SIZE: 128 -> 4 (5), 64 -> 4 (4), 32 -> 4 (3)
    assert total_stride(strides) == (32, 16, 8)
    bottleneck = [p // t for p, t in zip(patch, total_stride(strides))]
    assert all(b >= MIN_FEATURE_SIZE for b in bottleneck) and min(bottleneck) == MIN_FEATURE_SIZE
    assert patch == (128, 64, 32)


def test_topology_anisotropic_coarse_axis_waits():
    patch, strides, kernels = topology((160, 160, 40), (0.7, 0.7, 5.0))
    # Along z (7x coarser): no pooling and 1-wide kernels until x/y have caught up within 2x.
    assert kernels[0] == (3, 3, 1) and kernels[1] == (3, 3, 1)
    assert strides[1] == (2, 2, 1) and strides[2] == (2, 2, 1)
    assert kernels[2][2] == 3                      # x/y at 2.8 mm: z (5 mm) within 2x
    assert any(s[2] == 2 for s in strides)         # z is pooled later on
    assert all(k[:2] == (3, 3) for k in kernels)
    t = total_stride(strides)
    assert t[0] > t[2]
    assert all(p % s == 0 for p, s in zip(patch, t))


def test_topology_rounds_patch_to_nearest_multiple():
    patch, strides, _ = topology((100, 100, 100), (1.0, 1.0, 1.0))
    # 100 -> 50 -> 25 -> 12.5 -> 6.25: four pools, stride 16; 100 / 16 = 6.25 -> 6 -> 96
    assert total_stride(strides) == (16, 16, 16)
    assert patch == (96, 96, 96)


# --- make_plans -------------------------------------------------------------------------------

def effective(plans):
    return {k: v for k, v in plans.items() if k not in ("planned", "overrides")}


def test_make_plans_without_overrides(demo_fingerprint):
    plans = make_plans(demo_fingerprint)
    assert plans["overrides"] == {}
    assert effective(plans) == plans["planned"]
    plan = Plan.from_json(plans)
    assert plan.dataset == "demo" and plan.modalities == ("FLAIR", "T1gd")
    assert plan.labels == {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}
    assert plan.num_classes == 4 and plan.num_channels == 2 and plan.label_values == (0, 1, 2, 3)
    spacings = np.array([c["spacing"] for c in demo_fingerprint["cases"]])
    assert plan.spacing == pytest.approx(tuple(np.median(spacings, axis=0)))
    t = total_stride(plan.strides)
    assert all(p % s == 0 for p, s in zip(plan.patch_size, t))
    assert len(plan.filters) == len(plan.strides) == len(plan.kernels)
    assert plan.filters[0] == 32 and all(b == min(2 * a, 320) for a, b in zip(plan.filters, plan.filters[1:]))
    assert plan.batch_size == 2
    # Demo heads fill about 60% of their box: z-score inside the non-zero mask.
    assert all(n.scheme == "zscore" and n.use_mask for n in plan.normalization)
    assert len(plan.median_shape) == 3
    # The patch comes from the median shape: within one stride of it, and within the voxel cap.
    assert all(abs(p - m) <= s for p, m, s in zip(plan.patch_size, plan.median_shape, t))
    json.dumps(plans)  # serializable as is


def test_make_plans_overrides(demo_fingerprint):
    before = copy.deepcopy(demo_fingerprint)
    overrides = {"patch_size": [32, 32, 32], "filters": 16, "batch_size": 4,
                 "spacing": [1.5, 1.5, 1.5], "max_filters": None}
    plans = make_plans(demo_fingerprint, overrides)
    assert plans["overrides"] == {"patch_size": [32, 32, 32], "filters": 16, "batch_size": 4,
                                  "spacing": [1.5, 1.5, 1.5]}
    plan = Plan.from_json(plans)
    assert plan.patch_size == (32, 32, 32)
    assert plan.spacing == (1.5, 1.5, 1.5)
    assert plan.batch_size == 4
    # 32 -> 16 -> 8 -> 4: three pools, four levels
    assert plan.filters == (16, 32, 64, 128)
    assert len(plan.strides) == 4
    # Median shape follows the overridden spacing.
    assert plans["median_shape"] != plans["planned"]["median_shape"]
    # The planned values are untouched by the overrides.
    assert plans["planned"] == make_plans(demo_fingerprint)["planned"]
    assert plans["planned"]["batch_size"] == 2 and plans["planned"]["filters"][0] == 32
    assert demo_fingerprint == before


def test_filters_list_and_max_filters(demo_fingerprint):
    base = {"spacing": [1.0, 1.0, 1.0], "patch_size": [32, 32, 32]}  # four levels
    plan = Plan.from_json(make_plans(demo_fingerprint, {**base, "filters": [8, 16, 24, 40]}))
    assert plan.filters == (8, 16, 24, 40)
    plan = Plan.from_json(make_plans(demo_fingerprint, {**base, "filters": 64, "max_filters": 128}))
    assert plan.filters == (64, 128, 128, 128)
    with pytest.raises(ValueError, match="filters lists 3 levels.*4"):
        make_plans(demo_fingerprint, {**base, "filters": [8, 16, 32]})


def test_planned_patch_size_as_override_is_accepted(demo_fingerprint):
    planned = make_plans(demo_fingerprint)["planned"]
    plans = make_plans(demo_fingerprint, {"patch_size": list(planned["patch_size"])})
    assert effective(plans) == planned


def test_patch_size_not_divisible_names_nearest_valid(demo_fingerprint):
    # With 1 mm spacing, 33 -> 16.5 -> 8.25 -> 4.1: three pools, stride 8; nearest multiple 32.
    with pytest.raises(ValueError, match=r"patch_size \[33, 32, 32\].*nearest valid: \[32, 32, 32\]"):
        make_plans(demo_fingerprint, {"spacing": [1.0, 1.0, 1.0], "patch_size": [33, 32, 32]})
    # The suggestion is itself accepted.
    make_plans(demo_fingerprint, {"spacing": [1.0, 1.0, 1.0], "patch_size": [32, 32, 32]})


def test_unknown_override_key(demo_fingerprint):
    with pytest.raises(ValueError, match="patchsize"):
        make_plans(demo_fingerprint, {"patchsize": [64, 64, 64]})


def test_ct_modality_gets_dataset_statistics():
    fingerprint = {
        "dataset": "ct", "modalities": ["CT"], "labels": {"0": "background", "1": "liver"},
        "cases": [{"id": f"c{i}", "spacing": [0.8, 0.8, 2.5], "shape": [100, 100, 40],
                   "shape_after_crop": [100, 100, 40], "crop_fraction": 1.0,
                   "label_values": [0, 1]} for i in range(3)],
        "intensity": [{"mean": 99.0, "std": 40.0, "median": 100.0, "min": -900.0, "max": 2000.0,
                       "percentile_00_5": -50.0, "percentile_99_5": 250.0}],
    }
    plan = Plan.from_json(make_plans(fingerprint))
    (norm,) = plan.normalization
    assert norm.scheme == "ct" and norm.clip == (-50.0, 250.0)
    assert norm.mean == 99.0 and norm.std == 40.0
    assert plan.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert plan.median_shape == (100, 100, 40)


def test_plan_json_round_trip(demo_fingerprint, tmp_path):
    plan = Plan.from_json(make_plans(demo_fingerprint, {"batch_size": 3}))
    assert Plan.from_json(plan.to_json()) == plan
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    write_json(tmp_path / "plans.json", make_plans(demo_fingerprint, {"batch_size": 3}))
    loaded = Plan.load(tmp_path / "plans.json")
    assert loaded == plan and loaded.batch_size == 3
    assert isinstance(loaded.strides[0], tuple) and isinstance(loaded.labels, dict)
    assert all(isinstance(k, int) for k in loaded.labels)
