import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from unet.io.atomic import write_json
from unet.preprocessing.memory import GIB, RESERVED_GB, training_memory
from unet.preprocessing.plan import Plan
from unet.preprocessing.planning import OVERRIDABLE, make_plans, write_plans
from unet.preprocessing.topology import total_stride

SCHEMA = Path(__file__).parents[2] / "schemas" / "config.schema.yaml"


# --- worked examples: whole plans from hand-built fingerprints ---------------------------------

def fingerprint(modalities, n_labels, cases, crop_fraction=0.6):
    """A fingerprint as compute_fingerprint writes it; `cases` lists (spacing, shape after crop)."""
    return {
        "dataset": "worked", "modalities": list(modalities),
        "labels": {str(v): f"label {v}" for v in range(n_labels)},
        "cases": [{"id": f"case_{i:03d}", "spacing": list(sp), "shape": list(sh),
                   "shape_after_crop": list(sh), "crop_fraction": crop_fraction, "label_values": list(range(n_labels))}
                  for i, (sp, sh) in enumerate(cases)],
        "intensity": [{"mean": 100.0, "std": 20.0, "median": 100.0, "min": 0.0, "max": 300.0,
                       "percentile_00_5": 40.0, "percentile_99_5": 180.0} for _ in modalities],
    }


def plan_for(fp, **overrides):
    return Plan.from_json(make_plans(fp, overrides))


# Budget = gpu_memory_gb - RESERVED_GB (1.5) GiB. Memory = batch x activations x 2 bytes + 16
# bytes per weight. Activations per patch voxel, isotropic 6-level network (filters 32 ... 320,
# each level 1/8 of the voxels above): 4 channels + 2 x 4 classes = 12, plus per level
# 15 x F / 8^l (two blocks of 3 tensors, up + concat 3, two blocks of 3) and 6 x F at the
# bottleneck: 12 + 480 + 120 + 30 + 7.5 + 1.17 + 0.06 (0.12 when the last stride leaves one axis)
# = 650.7 per voxel. Weights: about 31M, 0.46 GiB.
BRATS = fingerprint(["FLAIR", "T1w", "T1gd", "T2w"], 4, [((1.0, 1.0, 1.0), (140, 175, 135))] * 484)


def test_worked_brats_like_8gb_is_nnunet_s_plan():
    plan = plan_for(BRATS, gpu_memory_gb=8)
    # Spacing 1 mm, median shape (140, 175, 135). Initial patch: 256^3 clipped to the median;
    # 140 -> 70 -> 35 -> 18 -> 9 -> 5, 175 -> ... -> 6, 135 -> ... -> 5: five pools each, stride 32,
    # padded up to (160, 192, 160). Shrinking the axis with the largest patch/median ratio:
    #   (160,192,160) 1.14 1.10 1.19 -> z: (160,192,128); x 1.14 -> (128,192,128); y 1.10 ->
    #   (128,160,128): 2 x 650.7 x 2.62M voxels x 2 B = 6.35 GiB + 0.46 = 6.82 > 6.5 GiB budget;
    #   ratios 0.91 0.91 0.95 -> z: 128 - 32 = 96 -> 48 -> 24 -> 12 -> 6 has four pools only,
    #   stride 16, so z steps by 16 -> (128,160,112): 2 x 650.8 x 2.29M x 2 B = 5.56 GiB + 0.46 = 6.02: fits.
    # nnU-Net v2 plans 128x160x112 (strides 2,2,2 x4 then 2,2,1) for BraTS at its 8 GB reference.
    assert plan.spacing == (1.0, 1.0, 1.0) and plan.median_shape == (140, 175, 135)
    assert plan.patch_size == (128, 160, 112)
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 4 + ((2, 2, 1),)
    assert plan.filters == (32, 64, 128, 256, 320, 320)
    assert all(k == (3, 3, 3) for k in plan.kernels)
    # One more sample would need 2.78 GiB: 6.02 + 2.78 > 6.5. Batch 2.
    assert plan.batch_size == 2
    assert 6.5 < plan.memory_estimate_gb <= 8   # 6.02 + the 1.5 reserved


def test_worked_brats_like_16gb_takes_the_whole_median_shape():
    plan = plan_for(BRATS, gpu_memory_gb=16)
    # Budget 14.5 GiB: the initial (160, 192, 160) needs 2 x 650.7 x 4.92M x 2 B = 11.92 GiB
    # + 0.46 = 12.38: fits as is. Batch: (14.5 - 0.46) / 5.96 per sample = 2.4 -> 2; the 5% cap,
    # 484 x 3.31M x 0.05 / 4.92M = 16, does not bind.
    assert plan.patch_size == (160, 192, 160)
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    assert plan.batch_size == 2
    # The planned values are for the default 16 GB.
    assert Plan.from_json(make_plans(BRATS, {"gpu_memory_gb": 8})["planned"]).patch_size == (160, 192, 160)


def test_worked_brats_task01_median_gets_128_cubed_at_8gb():
    # MSD Task01's median after cropping (138, 169, 138): from (160, 192, 160) the shrinking goes
    # z, x, y as above to (128, 160, 128) (6.82 GiB, too big), then y has the largest ratio
    # (160/169 = 0.95 > 128/138 = 0.93) and steps by 32: (128, 128, 128), 2 x 650.7 x 2.10M x 2 B
    # = 5.08 + 0.46 = 5.55 GiB: fits. nnU-Net's own rule lands there too (v1 planned 128^3).
    fp = fingerprint(["FLAIR", "T1w", "T1gd", "T2w"], 4, [((1.0, 1.0, 1.0), (138, 169, 138))] * 484)
    assert plan_for(fp, gpu_memory_gb=8).patch_size == (128, 128, 128)


PROSTATE_Z = [3.0, 4.0] + [5.0] * 8 + [6.0]
# 100 mm of slices whatever the thickness: 33, 25, 20 or 17 slices of 320 x 320 at 0.7 mm.
PROSTATE = fingerprint(["T2", "ADC"], 3, [((0.7, 0.7, z), (320, 320, {3.0: 33, 4.0: 25, 5.0: 20, 6.0: 17}[z]))
                                          for z in PROSTATE_Z] * 3)


def test_worked_prostate_like_anisotropic():
    plan = plan_for(PROSTATE, gpu_memory_gb=8)
    # Target spacing: median (0.7, 0.7, 5.0); 5.0 > 3 x 0.7 and 20 slices x 3 < 320: anisotropic,
    # z takes its 10th percentile. 33 cases sorted: three 3.0, three 4.0, ...; rank 3.2 -> 4.0.
    assert plan.spacing == pytest.approx((0.7, 0.7, 4.0))
    # Resampled z: 33 x 3 / 4 = 24.75 -> 25, 25, 20 x 5 / 4 = 25, 17 x 6 / 4 = 25.5 -> 26: median 25.
    assert plan.median_shape == (320, 320, 25)
    # Initial patch: 1/spacing (1.43, 1.43, 0.25) scaled to 256^3 voxels: (458, 458, 80), clipped
    # to (320, 320, 25). Topology: z waits (kernel 1, stride 1) while 4.0 >= 2 x the in-plane
    # spacing: 0.7, 1.4; at 2.8 it joins; (320,320,25) -> (160,160,25) -> (80,80,25) -> (40,40,13)
    # -> (20,20,7); z stops at 7; x/y -> 10 -> 5: six pools in-plane (stride 64), two in z (4).
    assert plan.strides == ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1))
    assert plan.kernels == ((3, 3, 1), (3, 3, 1)) + ((3, 3, 3),) * 5
    assert plan.filters == (32, 64, 128, 256, 320, 320, 320)
    # Activations per voxel: 2 + 2 x 3 = 8, plus 15 x (32 + 64/4 + 128/16 + 256/128 + 320/1024 +
    # 320/4096) + 6 x 320/16384 = 884. Weights 44.6M, 0.66 GiB. Budget 6.5 GiB.
    #   (320,320,28) [25 padded to 28]: 2 x 884 x 2.87M x 2 B = 9.44 + 0.66 GiB: too big; ratios
    #   1, 1, 1.12 -> z steps by 4: (320,320,24), 8.09 + 0.66: too big; ratios 1, 1, 0.96: a tie,
    #   broken as nnU-Net's argsort over its axes (z, y, x): the last, x: (256,320,24), 6.48 + 0.66
    #   = 7.14: too big; y: (256,256,24), 5.18 + 0.66 = 5.84: fits. nnU-Net v2 gives 24 x 256 x 256.
    assert plan.patch_size == (256, 256, 24)
    # A third sample (2.59 GiB) does not fit: batch 2.
    assert plan.batch_size == 2


def test_worked_prostate_like_16gb_whole_median():
    # Budget 14.5 GiB: (320, 320, 28) needs 10.1 GiB and fits; one more sample (4.72) would not,
    # and the 5% cap (33 x 320 x 320 x 25 x 0.05 / (320 x 320 x 28) = 1.5) is below 2 anyway.
    plan = plan_for(PROSTATE, gpu_memory_gb=16)
    assert plan.patch_size == (320, 320, 28) and plan.batch_size == 2


def test_worked_hippocampus_like_small_volumes():
    fp = fingerprint(["MRI"], 3, [((1.0, 1.0, 1.0), (36, 50, 35))] * 260)
    plan = plan_for(fp, gpu_memory_gb=8)
    # Initial patch is the median shape (36, 50, 35); 36 -> 18 -> 9 -> 5, 50 -> 25 -> 13 -> 7,
    # 35 -> 18 -> 9 -> 5: three pools each, stride 8; padded up to (40, 56, 40), the whole median.
    assert plan.median_shape == (36, 50, 35)
    assert plan.patch_size == (40, 56, 40)
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 3 and plan.filters == (32, 64, 128, 256)
    # Memory is no limit (0.11 GiB per sample); the 5% cap binds: 260 x 36 x 50 x 35 x 0.05 /
    # (40 x 56 x 40) = 9.1 -> 9, as nnU-Net plans for MSD Task04.
    assert plan.batch_size == 9
    assert plan.normalization == (plan.normalization[0],) and plan.normalization[0].scheme == "zscore"


def test_budget_below_the_reserve_names_the_key():
    # 1.5 GiB is all reserved: nothing fits, down to the smallest patch.
    with pytest.raises(ValueError, match="plan.gpu_memory_gb"):
        make_plans(fingerprint(["MRI"], 2, [((1.0, 1.0, 1.0), (36, 50, 35))] * 10), {"gpu_memory_gb": 1.5})


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
    # Three small cases: 5% of their voxels is under one patch, so the minimum batch of 2.
    assert plan.batch_size == 2
    # Demo heads fill about 60% of their box: z-score inside the non-zero mask.
    assert all(n.scheme == "zscore" and n.use_mask for n in plan.normalization)
    assert len(plan.median_shape) == 3
    # The demo's small heads fit a 16 GB budget whole: the median shape padded up to the stride.
    assert all(m <= p < m + s for p, m, s in zip(plan.patch_size, plan.median_shape, t))
    assert plan.gpu_memory_gb == 16 and 0 < plan.memory_estimate_gb <= 16
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


def test_demo_config_overrides(demo_fingerprint):
    # config.yaml's demo settings, with the schema's default gpu_memory_gb filled in.
    overrides = {"patch_size": [32, 32, 32], "filters": 8, "batch_size": 2, "gpu_memory_gb": 16}
    plans = make_plans(demo_fingerprint, overrides)
    assert plans["overrides"] == overrides
    plan = Plan.from_json(plans)
    assert plan.patch_size == (32, 32, 32) and plan.batch_size == 2 and plan.filters[0] == 8
    assert plans["planned"]["filters"][0] == 32


def test_patch_override_alone_gets_a_planned_batch():
    # BraTS-like at 8 GB with a 64^3 patch: memory allows many samples, the 5% cap
    # 484 x 140 x 175 x 135 x 0.05 / 64^3 = 305 does not bind; memory does.
    plan = plan_for(BRATS, gpu_memory_gb=8, patch_size=[64, 64, 64])
    assert plan.patch_size == (64, 64, 64)
    # (64^3: 4 pools -> 5 levels). Per sample: 2 B x activations; the batch is the largest that fits.
    per_sample = training_memory(plan.patch_size, plan.strides, plan.kernels, plan.filters, 4, 4, 1) - \
        training_memory(plan.patch_size, plan.strides, plan.kernels, plan.filters, 4, 4, 0)
    fixed = training_memory(plan.patch_size, plan.strides, plan.kernels, plan.filters, 4, 4, 0)
    budget = (8 - RESERVED_GB) * GIB
    assert fixed + plan.batch_size * per_sample <= budget < fixed + (plan.batch_size + 1) * per_sample
    assert plan.batch_size > 2


def test_normalization_and_use_mask_overrides():
    planned = plan_for(BRATS)
    # MRI channels, crop kept 60% of the box (< 75%): z-score inside the non-zero mask.
    assert all(n.scheme == "zscore" and n.use_mask for n in planned.normalization)
    plan = plan_for(BRATS, normalization=["ct", "zscore", "zscore", "zscore"], use_mask=False)
    ct, *rest = plan.normalization
    assert ct.scheme == "ct" and ct.clip == (40.0, 180.0) and (ct.mean, ct.std) == (100.0, 20.0)
    assert not ct.use_mask
    assert all(n.scheme == "zscore" and not n.use_mask for n in rest)
    # use_mask alone, on a dataset whose crop kept 90% of the box (planned: no mask).
    loose = fingerprint(["MRI"], 2, [((1.0, 1.0, 1.0), (36, 50, 35))] * 10, crop_fraction=0.9)
    assert not plan_for(loose).normalization[0].use_mask
    assert plan_for(loose, use_mask=True).normalization[0].use_mask


def test_normalization_override_needs_one_scheme_per_channel():
    with pytest.raises(ValueError, match=r"plan\.normalization lists 2 schemes.*4 channels"):
        make_plans(BRATS, {"normalization": ["ct", "zscore"]})


def test_ct_override_needs_foreground_statistics():
    fp = copy.deepcopy(BRATS)
    fp["intensity"][1] = {k: None for k in fp["intensity"][1]}
    with pytest.raises(ValueError, match=r"plan\.normalization: channel 1 \(T1w\)"):
        make_plans(fp, {"normalization": ["zscore", "ct", "zscore", "zscore"]})


def test_every_override_is_recorded():
    overrides = {"spacing": [1.5, 1.5, 1.5], "patch_size": [64, 64, 64], "batch_size": 3, "filters": 16,
                 "max_filters": 256, "gpu_memory_gb": 24, "normalization": ["zscore"] * 4, "use_mask": False}
    plans = make_plans(BRATS, overrides)
    assert plans["overrides"] == overrides
    plan = Plan.from_json(plans)
    assert plan.spacing == (1.5, 1.5, 1.5) and plan.patch_size == (64, 64, 64) and plan.batch_size == 3
    assert plan.filters == (16, 32, 64, 128, 256) and plan.gpu_memory_gb == 24
    planned = Plan.from_json(plans["planned"])
    assert planned.gpu_memory_gb == 16 and planned.patch_size == (160, 192, 160)
    assert planned.spacing == (1.0, 1.0, 1.0) and planned.filters[0] == 32


def test_overridable_keys_match_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert set(schema["properties"]["plan"]["properties"]) == set(OVERRIDABLE)


def test_an_ignore_label_is_recorded_and_not_predicted(demo_fingerprint, tmp_path):
    fingerprint = copy.deepcopy(demo_fingerprint)
    fingerprint["labels"]["4"] = "ignore"
    plans = make_plans(fingerprint)
    assert plans["ignore_label"] == 4 and plans["planned"]["ignore_label"] == 4
    plan = Plan.from_json(plans)
    assert plan.labels[4] == "ignore"  # dataset.json's labels, every one
    assert plan.ignore_label == 4 and plan.label_values == (0, 1, 2, 3) and plan.num_classes == 4
    assert plan.seg_label_values == (0, 1, 2, 3, 4) and plan.ignore_index == 4
    write_json(tmp_path / "plans.json", plans)
    assert Plan.load(tmp_path / "plans.json") == plan
    # The network is planned for the classes it predicts: the same as without the ignore label.
    assert plan.memory_estimate_gb == Plan.from_json(make_plans(demo_fingerprint)).memory_estimate_gb
    plain = make_plans(demo_fingerprint)
    assert plain["ignore_label"] is None and Plan.from_json(plain).ignore_index is None


def test_the_rule_writes_plans_json_and_shows_both_plans(demo_fingerprint, tmp_path, capsys):
    write_json(tmp_path / "fingerprint.json", demo_fingerprint)
    plans = write_plans(tmp_path / "fingerprint.json", tmp_path / "plans.json",
                        overrides={"batch_size": 3, "patch_size": None})
    assert plans == make_plans(demo_fingerprint, {"batch_size": 3})
    assert json.loads((tmp_path / "plans.json").read_text()) == json.loads(json.dumps(plans))
    log = capsys.readouterr().out.splitlines()
    # The demo's small heads get a 2d configuration only, besides 3d_fullres.
    assert [line.split()[0] for line in log] == ["planned", "effective", "2d", "overrides"]
    assert "'batch_size': 2" in log[0] and "'batch_size': 3" in log[1] and log[3] == "overrides {'batch_size': 3}"
    assert "'patch_size': " + str(plans["configurations"]["2d"]["patch_size"]) in log[2]
