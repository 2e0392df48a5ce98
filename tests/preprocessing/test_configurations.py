"""nnU-Net v2's configurations (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) against nnU-Net
v2's own planner, on seven dataset shapes.

NNUNET records what nnU-Net's default ExperimentPlanner (`nnUNetv2_plan_experiment`, 8 GB target)
plans for the fingerprints of DATASETS; `test_nnunets_planner_still_plans_the_record` (marked
nnunet: it runs nnU-Net from .bench/nnunet-venv) checks the record against a live run and our
topology against nnU-Net's, and the other tests compare our planner with the record.

Where we differ by design, the tests assert the relation:
- 2d batch: nnU-Net sizes 2D networks by a reference of its own (85M feature-map elements at
  batch 12 per 8 GB), 9% below its 3D one (560M at batch 2); we size both with one memory model
  calibrated on 3D (unet.preprocessing.memory), so our 2d batch is nnU-Net's or up to 10% more.
- the abdomen's 3d_lowres: the lowres search stops at the first spacing whose patch covers a
  quarter of the median image. At nnU-Net's spacing, its patch (192, 192, 56) costs 6.64 GiB in
  our memory model, over the 6.5 GiB budget (nnU-Net's estimate lets it pass); our patch there
  is (192, 192, 48), 22% of the image, and our spacing grows three steps further.
"""

import copy
import json

import numpy as np
import pytest

from unet.io.atomic import write_json
from unet.preprocessing.configurations import (LOWRES_STEP, LOWRES_THRESHOLD, Planner, nnunet_axis_order,
                                               plan_configurations, slice_axis)
from unet.preprocessing.memory import memory_budget, training_memory
from unet.preprocessing.plan import CONFIGURATIONS, Plan, configuration_names
from unet.preprocessing.planning import make_plans
from unet.preprocessing.topology import total_stride

GB = 8  # nnU-Net's default target, the one its reference values were tuned for


def fingerprint(modalities, n_labels, cases, crop_fraction=0.6):
    """A fingerprint as compute_fingerprint writes it; `cases` lists (spacing, shape after crop)."""
    return {
        "dataset": "shapes", "modalities": list(modalities),
        "labels": {str(v): f"label {v}" for v in range(n_labels)},
        "cases": [{"id": f"case_{i:03d}", "spacing": list(sp), "shape": list(sh), "shape_after_crop": list(sh),
                   "crop_fraction": crop_fraction, "label_values": list(range(n_labels))}
                  for i, (sp, sh) in enumerate(cases)],
        "intensity": [{"mean": 100.0, "std": 20.0, "median": 100.0, "min": 0.0, "max": 300.0,
                       "percentile_00_5": 40.0, "percentile_99_5": 180.0} for _ in modalities],
    }


PROSTATE_Z = [3.0, 4.0] + [5.0] * 8 + [6.0]
DATASETS = {
    # Small isotropic MRI (MSD Task04): no 3d_lowres; the 2d batch is the 5% cap.
    "hippocampus": fingerprint(["MRI"], 3, [((1.0, 1.0, 1.0), (36, 50, 35))] * 260),
    # Four channels, the 3d_fullres calibration (MSD Task01).
    "brats": fingerprint(["FLAIR", "T1w", "T1gd", "T2w"], 4, [((1.0, 1.0, 1.0), (140, 175, 135))] * 484),
    # Thick slices along z (MSD Task05): anisotropic target spacing, 2d over z.
    "prostate": fingerprint(["T2", "ADC"], 3, [((0.7, 0.7, z), (320, 320, {3.0: 33, 4.0: 25, 5.0: 20, 6.0: 17}[z]))
                                               for z in PROSTATE_Z] * 3),
    # Large CT: the 3d_fullres patch holds 2% of the image; 3d_lowres grows all axes alike.
    "ct": fingerprint(["CT"], 3, [((0.8, 0.8, 1.0), (512, 512, 400))] * 100, crop_fraction=1.0),
    # Thick slices along x (sagittal): nnU-Net transposes x first; 2d slices along x.
    "sagittal": fingerprint(["MRI"], 2, [((4.0, 0.6, 0.6), (28, 384, 384))] * 30),
    # Thick-slice CT: 3d_lowres grows the in-plane spacing alone while z is over 2x coarser.
    "abdomen": fingerprint(["CT"], 3, [((0.78, 0.78, 5.0), (512, 512, 80))] * 41, crop_fraction=1.0),
    # The fullres patch holds 20% of the image: the lowres search runs, and is dropped (< 2x smaller).
    "knee": fingerprint(["MRI"], 2, [((1.0, 1.0, 1.0), (220, 220, 220))] * 50),
}

# nnU-Net v2.6's plans in our axes: spacing, median shape, patch, batch, total stride (2d: in-plane).
NNUNET = {
    "hippocampus": {
        "2d": ([1.0, 1.0], [36, 50], [40, 56], 366, [8, 8]),
        "3d_fullres": ([1.0, 1.0, 1.0], [36, 50, 35], [40, 56, 40], 9, [8, 8, 8])},
    "brats": {
        "2d": ([1.0, 1.0], [140, 175], [160, 192], 105, [32, 32]),
        "3d_fullres": ([1.0, 1.0, 1.0], [140, 175, 135], [128, 160, 112], 2, [32, 32, 16])},
    "prostate": {
        "2d": ([0.7, 0.7], [320, 320], [320, 320], 32, [64, 64]),
        "3d_fullres": ([0.7, 0.7, 4.0], [320, 320, 25], [256, 256, 24], 2, [64, 64, 4])},
    "ct": {
        "2d": ([0.8, 0.8], [512, 512], [512, 512], 12, [128, 128]),
        "3d_lowres": ([1.8303, 1.8303, 2.2879], [224, 224, 175], [128, 160, 112], 2, [32, 32, 16]),
        "3d_fullres": ([0.8, 0.8, 1.0], [512, 512, 400], [128, 160, 112], 2, [32, 32, 16]),
        "3d_cascade_fullres": ([0.8, 0.8, 1.0], [512, 512, 400], [128, 160, 112], 2, [32, 32, 16])},
    "sagittal": {
        "2d": ([0.6, 0.6], [384, 384], [384, 384], 22, [64, 64]),
        "3d_fullres": ([4.0, 0.6, 0.6], [28, 384, 384], [20, 256, 320], 2, [4, 64, 64])},
    "abdomen": {
        "2d": ([0.78, 0.78], [512, 512], [512, 512], 12, [128, 128]),
        "3d_lowres": ([1.2517, 1.2517, 5.0], [319, 319, 80], [192, 192, 56], 2, [32, 32, 8]),
        "3d_fullres": ([0.78, 0.78, 5.0], [512, 512, 80], [224, 224, 32], 2, [32, 32, 8]),
        "3d_cascade_fullres": ([0.78, 0.78, 5.0], [512, 512, 80], [224, 224, 32], 2, [32, 32, 8])},
    "knee": {
        "2d": ([1.0, 1.0], [220, 220], [224, 224], 65, [32, 32]),
        "3d_fullres": ([1.0, 1.0, 1.0], [220, 220, 220], [128, 128, 128], 2, [32, 32, 32])},
}
SLICE_AXIS = {"sagittal": 0}  # 2d slices along z elsewhere
NNUNET_2D_BUDGET = 85e6 * 12 / (560e6 * 2)  # nnU-Net's 2D reference over its 3D one: 0.91
DIFFERENT = {("abdomen", "3d_lowres")}      # see the module's docstring and its own test


def summary(plan: Plan) -> tuple:
    return ([round(s, 4) for s in plan.spacing], list(plan.median_shape), list(plan.patch_size), plan.batch_size,
            list(total_stride(plan.strides)))


@pytest.fixture(scope="module")
def ours():
    return {name: plan_configurations(fp, {"gpu_memory_gb": GB}) for name, fp in DATASETS.items()}


@pytest.mark.parametrize("name", list(DATASETS))
def test_the_configurations_are_nnunets(ours, name):
    plans, theirs = ours[name], NNUNET[name]
    assert set(plans) == set(theirs)
    assert list(plans) == [c for c in CONFIGURATIONS if c in plans]
    for config, (spacing, median, patch, batch, stride) in theirs.items():
        if (name, config) in DIFFERENT:
            continue
        plan = plans[config]
        assert plan.configuration == config
        assert plan.spacing == pytest.approx(spacing, abs=1e-4), config
        assert (list(plan.median_shape), list(plan.patch_size)) == (median, patch), config
        assert list(total_stride(plan.strides)) == stride, config
        if config == "2d":
            assert plan.slice_axis == SLICE_AXIS.get(name, 2)
            assert batch <= plan.batch_size <= batch / NNUNET_2D_BUDGET
        else:
            assert plan.batch_size == batch, config
        assert plan.memory_estimate_gb <= GB


def test_the_2d_batch_is_up_to_a_tenth_larger_than_nnunets(ours):
    # The relation holds tight: every 2d network here fits either the 5% cap (hippocampus, equal)
    # or our budget with up to 10% more samples than nnU-Net's reference (2D weights, up to 512
    # filters, take their share of our budget: a 512 x 512 slice gets nnU-Net's 12).
    batches = {name: (ours[name]["2d"].batch_size, NNUNET[name]["2d"][3]) for name in DATASETS}
    assert batches == {"hippocampus": (366, 366), "brats": (114, 105), "prostate": (33, 32), "ct": (12, 12),
                       "sagittal": (23, 22), "abdomen": (12, 12), "knee": (70, 65)}


def test_abdomen_lowres_stops_where_our_memory_model_lets_the_patch_cover_a_quarter(ours):
    lowres = ours["abdomen"]["3d_lowres"]
    spacing, median, patch, _, _ = NNUNET["abdomen"]["3d_lowres"]
    # At nnU-Net's spacing its patch does not fit our budget; ours there covers less than a quarter.
    planner = Planner.of(DATASETS["abdomen"], {"gpu_memory_gb": GB})
    theirs_here = planner.network(spacing, median, float(np.prod(median)) * 41, {})
    assert theirs_here.patch_size == (192, 192, 48)
    assert np.prod(theirs_here.patch_size) / np.prod(median) < LOWRES_THRESHOLD <= np.prod(patch) / np.prod(median)
    p, s, k, f = patch, theirs_here.strides, theirs_here.kernels, theirs_here.filters
    assert training_memory(p, s, k, f, 1, 3, 2) > memory_budget(GB) >= theirs_here.memory_bytes
    # So ours is three LOWRES_STEPs further: the in-plane axes only (z is over 2x coarser throughout).
    assert lowres.spacing == pytest.approx((spacing[0] * LOWRES_STEP ** 3, spacing[1] * LOWRES_STEP ** 3, 5.0), rel=1e-4)
    assert lowres.median_shape == (292, 292, 80) and lowres.patch_size == (192, 192, 48)
    assert np.prod(lowres.patch_size) / np.prod(lowres.median_shape) >= LOWRES_THRESHOLD
    assert lowres.batch_size == 2 and lowres.strides == theirs_here.strides


def test_lowres_runs_and_is_dropped_when_the_image_shrinks_less_than_twofold(ours):
    fullres = ours["knee"]["3d_fullres"]
    assert np.prod(fullres.patch_size) / np.prod(fullres.median_shape) < LOWRES_THRESHOLD  # the search ran
    assert "3d_lowres" not in ours["knee"] and "3d_cascade_fullres" not in ours["knee"]


def test_lowres_grows_every_axis_once_none_is_twice_as_fine(ours):
    lowres, fullres = ours["ct"]["3d_lowres"], ours["ct"]["3d_fullres"]
    factors = np.array(lowres.spacing) / np.array(fullres.spacing)
    assert factors == pytest.approx([factors[0]] * 3)
    steps = np.log(factors[0]) / np.log(LOWRES_STEP)
    assert steps == pytest.approx(round(steps)) and round(steps) == 28


def test_slice_axis_is_nnunets_first_axis_after_its_transpose():
    assert slice_axis((1.0, 1.0, 1.0)) == 2 and slice_axis((0.7, 0.7, 4.0)) == 2
    assert slice_axis((4.0, 0.6, 0.6)) == 0 and slice_axis((0.5, 3.0, 0.5)) == 1
    assert slice_axis((0.5, 2.0, 2.0)) == 2  # a tie: nnU-Net's first axis, our last
    # nnU-Net's axes are ours reversed, then transposed with the slice axis first.
    assert nnunet_axis_order((1.0, 1.0, 1.0)) == (2, 1, 0)
    assert nnunet_axis_order((4.0, 0.6, 0.6)) == (0, 2, 1)


def test_a_2d_plan_is_along_the_in_plane_axes(ours):
    plan = ours["sagittal"]["2d"]
    fullres = ours["sagittal"]["3d_fullres"]
    assert plan.slice_axis == 0 and plan.in_plane_axes == (1, 2) and plan.spatial_dims == 2
    assert plan.spacing == fullres.spacing[1:] and plan.median_shape == fullres.median_shape[1:]
    assert all(len(level) == 2 for level in plan.strides + plan.kernels)
    # nnU-Net's 2D rules: filters up to 512, no cap on the pools (a 384 slice is pooled 6 times to 6).
    assert plan.filters == (32, 64, 128, 256, 512, 512, 512)
    assert fullres.in_plane_axes == (0, 1, 2) and fullres.slice_axis is None and fullres.spatial_dims == 3
    ct = ours["ct"]["2d"]
    assert total_stride(ct.strides) == (128, 128) and max(ct.filters) == 512  # seven pools: 512 -> 4


# --- plans.json --------------------------------------------------------------------------------

def test_plans_json_keeps_3d_fullres_on_top_and_the_others_under_configurations(tmp_path):
    plans = make_plans(DATASETS["ct"], {"gpu_memory_gb": GB})
    fullres = plan_configurations(DATASETS["ct"], {"gpu_memory_gb": GB})
    top = {k: v for k, v in plans.items() if k not in ("configurations", "planned", "overrides")}
    assert top == fullres["3d_fullres"].to_json() and top["configuration"] == "3d_fullres"
    assert list(plans["configurations"]) == ["2d", "3d_lowres", "3d_cascade_fullres"]
    assert list(plans["planned"]["configurations"]) == ["2d", "3d_lowres", "3d_cascade_fullres"]
    assert configuration_names(plans) == CONFIGURATIONS
    cascade = plans["configurations"]["3d_cascade_fullres"]
    assert cascade["previous_stage"] == "3d_lowres" and cascade["configuration"] == "3d_cascade_fullres"
    assert {k: v for k, v in cascade.items() if k not in ("configuration", "previous_stage")} == \
        {k: v for k, v in top.items() if k not in ("configuration", "previous_stage")}
    write_json(tmp_path / "plans.json", plans)
    for name in CONFIGURATIONS:
        plan = Plan.load(tmp_path / "plans.json", name)
        assert plan == fullres[name] and plan.configuration == name
    assert Plan.load(tmp_path / "plans.json") == fullres["3d_fullres"]
    json.dumps(plans)
    # A dataset without 3d_lowres: asking for it names the file and what was planned.
    write_json(tmp_path / "small.json", make_plans(DATASETS["hippocampus"]))
    with pytest.raises(ValueError, match=r"small\.json: configuration '3d_lowres' is not planned.*\['2d', '3d_fullres'\]"):
        Plan.load(tmp_path / "small.json", "3d_lowres")


def test_a_plans_json_written_before_configurations_still_loads(tmp_path):
    plans = make_plans(DATASETS["hippocampus"])
    old = {k: v for k, v in plans.items() if k not in ("configurations", "configuration", "slice_axis", "previous_stage")}
    write_json(tmp_path / "plans.json", old)
    assert Plan.load(tmp_path / "plans.json") == Plan.from_json(plans)
    assert configuration_names(old) == ("3d_fullres",)


def test_network_overrides_size_3d_fullres_and_its_cascade_only():
    overrides = {"gpu_memory_gb": GB, "patch_size": [64, 64, 64], "filters": 16, "batch_size": 3}
    plans = plan_configurations(DATASETS["ct"], overrides)
    planned = plan_configurations(DATASETS["ct"], {"gpu_memory_gb": GB})
    for name in ("3d_fullres", "3d_cascade_fullres"):
        assert plans[name].patch_size == (64, 64, 64) and plans[name].filters[0] == 16 and plans[name].batch_size == 3
    # 2d and 3d_lowres as planned; 3d_lowres exists because the planned 3d_fullres patch is small,
    # not because the overridden one is.
    assert plans["2d"] == planned["2d"] and plans["3d_lowres"] == planned["3d_lowres"]
    hippocampus = plan_configurations(DATASETS["hippocampus"], {"patch_size": [16, 16, 16]})
    assert set(hippocampus) == {"2d", "3d_fullres"}


def test_2d_and_lowres_sections_size_those_networks_only():
    overrides = {"gpu_memory_gb": GB, "2d": {"patch_size": [128, 96], "filters": 8, "batch_size": 5},
                 "3d_lowres": {"filters": 16, "batch_size": 1}}
    plans = plan_configurations(DATASETS["ct"], overrides)
    planned = plan_configurations(DATASETS["ct"], {"gpu_memory_gb": GB})
    assert plans["2d"].patch_size == (128, 96) and plans["2d"].filters[0] == 8 and plans["2d"].batch_size == 5
    assert plans["3d_lowres"].filters[0] == 16 and plans["3d_lowres"].batch_size == 1
    # The lowres spacing stays planned (a smaller network fits a larger patch there); 3d_fullres untouched.
    assert plans["3d_lowres"].spacing == planned["3d_lowres"].spacing
    assert plans["3d_fullres"] == planned["3d_fullres"]
    with pytest.raises(ValueError, match=r"plan\.2d: unknown keys \['spacing'\]"):
        make_plans(DATASETS["ct"], {"2d": {"spacing": [1.0, 1.0]}})


def test_dataset_overrides_reach_every_configuration():
    fp = DATASETS["ct"]
    plans = plan_configurations(fp, {"gpu_memory_gb": 16, "spacing": [1.0, 1.0, 1.6], "normalization": ["zscore"],
                                     "use_mask": True})
    assert all(p.gpu_memory_gb == 16 and p.normalization[0].scheme == "zscore" and p.normalization[0].use_mask for p in plans.values())
    assert plans["2d"].spacing == (1.0, 1.0) and plans["2d"].median_shape == (410, 410)
    assert plans["3d_fullres"].spacing == (1.0, 1.0, 1.6) and plans["3d_lowres"].spacing[2] > 1.6
    # A larger GPU: a larger 2d batch than at 8 GB.
    assert plans["2d"].batch_size > plan_configurations(fp, {"gpu_memory_gb": GB, "spacing": [1.0, 1.0, 1.6]})["2d"].batch_size


def test_the_demo_plans_2d_and_3d_fullres(demo_fingerprint):
    plans = make_plans(demo_fingerprint, {"patch_size": [32, 32, 32], "filters": 8, "batch_size": 2})
    assert list(plans["configurations"]) == ["2d"]
    two_d = Plan.from_plans(plans, "2d")
    assert two_d.slice_axis == 2 and two_d.spacing == tuple(plans["spacing"][:2])
    assert two_d.filters[0] == 32 and two_d.batch_size >= 2  # the overrides size 3d_fullres only
    # The 2d patch is the median slice padded up to the stride, as in 3D.
    t = total_stride(two_d.strides)
    assert all(m <= p < m + s for p, m, s in zip(two_d.patch_size, two_d.median_shape, t))


# --- against nnU-Net v2 itself -----------------------------------------------------------------

@pytest.mark.nnunet
def test_nnunets_planner_still_plans_the_record(ours, nnunet_python, tmp_path):
    from unet.bench.nnunet_plans import configurations_in_our_axes, run_nnunet_planner

    names = list(DATASETS)
    theirs = run_nnunet_planner(nnunet_python, [copy.deepcopy(DATASETS[n]) for n in names], tmp_path, GB)
    for name, plans in zip(names, theirs):
        configs = configurations_in_our_axes(plans)
        record = {c: ([round(s, 4) for s in v["spacing"]], [int(m) for m in v["median_shape"]], v["patch_size"],
                      v["batch_size"], list(total_stride(v["strides"]))) for c, v in configs.items()}
        assert record == NNUNET[name], name
        assert configs["2d"]["slice_axis"] == SLICE_AXIS.get(name, 2), name
        # Our topology is nnU-Net's wherever spacing and patch agree.
        for config, v in configs.items():
            if (name, config) in DIFFERENT:
                continue
            plan = ours[name][config]
            assert [list(s) for s in plan.strides] == v["strides"], (name, config)
            assert [list(k) for k in plan.kernels] == v["kernels"], (name, config)
            assert list(plan.filters) == v["filters"], (name, config)
            assert plan.previous_stage == v.get("previous_stage"), (name, config)
