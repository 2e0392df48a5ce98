"""The accuracy benchmark with several configurations (`--configurations 3d_fullres 2d`): our 2d
plan as nnU-Net's 2d configuration (its axes, its slice axis), our workflow's outputs per
configuration (checked against the Snakefile by a dry run), and the joined report."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unet.bench import nnunet_train
from unet.bench.accuracy import (DEFAULTS_2D, FULLRES, benchmark_plan, main, our_outputs, run_benchmark,
                                 workflow_config)
from unet.bench.accuracy_report import build_report, combine_reports, format_report, format_summary
from unet.bench.nnunet_train import (add_configuration, bench_configuration, from_nnunet_plane, network_in_our_axes,
                                     to_nnunet_plane)

REPO = Path(__file__).resolve().parents[2]

# Our 2d plan of the hard dataset (plans.json's configurations.2d): slices along z (axis 2), the
# in-plane values along x, y.
OUR_2D = {"configuration": "2d", "slice_axis": 2, "spacing": [0.713, 0.7], "patch_size": [96, 80],
          "batch_size": 14, "filters": [16, 32, 64], "median_shape": [90, 87],
          "strides": [[1, 1], [2, 2], [2, 1]], "kernels": [[3, 3], [3, 3], [3, 1]]}


def _arch(stages, dims):
    return {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": stages, "features_per_stage": [32] * stages,
                            "strides": [[1] * dims] * stages, "kernel_sizes": [[3] * dims] * stages,
                            "n_conv_per_stage": [2] * stages, "n_conv_per_stage_decoder": [2] * (stages - 1)}}


def _nnunet_plans(transpose_forward=(0, 1, 2)):
    """nnU-Net's plans of the hard dataset, the parts the conversion reads (its 2d's batch Dice
    differs from its 3d_fullres', as nnU-Net plans them)."""
    return {"plans_name": "nnUNetPlans", "transpose_forward": list(transpose_forward), "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "batch_size": 22, "patch_size": [96, 96],
               "spacing": [0.713, 0.713], "median_image_size_in_voxels": [87, 90], "batch_dice": True,
               "architecture": _arch(5, 2)},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2, "patch_size": [28, 96, 96],
                       "spacing": [3.71, 0.713, 0.713], "median_image_size_in_voxels": [26, 87, 90],
                       "batch_dice": False, "architecture": _arch(6, 3)}}}


# --- our 2d plan as nnU-Net's 2d configuration -------------------------------------------------

def test_a_2d_configuration_takes_our_in_plane_values_reversed_and_nnunets_2d_settings():
    plans = _nnunet_plans()
    config = bench_configuration(plans, OUR_2D)
    # nnU-Net's axes are ours reversed (z, y, x); its 2d drops the first (z), so it holds y, x.
    assert config["patch_size"] == [80, 96] and config["spacing"] == [0.7, 0.713]
    assert config["median_image_size_in_voxels"] == [87, 90] and config["batch_size"] == 14
    kwargs = config["architecture"]["arch_kwargs"]
    assert kwargs["strides"] == [[1, 1], [2, 2], [1, 2]] and kwargs["kernel_sizes"] == [[3, 3], [3, 3], [1, 3]]
    assert kwargs["features_per_stage"] == [16, 32, 64] and kwargs["n_stages"] == 3
    assert kwargs["n_conv_per_stage_decoder"] == [2, 2]
    assert config["data_identifier"] == "nnUNetPlans_2d_bench" and config["batch_dice"] is True  # its 2d's
    assert plans["configurations"]["2d"]["patch_size"] == [96, 96]  # the original untouched


@pytest.mark.parametrize("forward", [(0, 1, 2), (0, 2, 1), (2, 0, 1), (1, 2, 0)])
def test_a_2d_configuration_read_back_in_our_axes_is_our_network(forward):
    plan = {**OUR_2D, "slice_axis": 2 - forward[0]}
    back = network_in_our_axes(bench_configuration(_nnunet_plans(forward), plan), forward)
    assert back == {k: plan[k] for k in back} and back["slice_axis"] == plan["slice_axis"]
    assert from_nnunet_plane(to_nnunet_plane(["a", "b"], forward, plan["slice_axis"]), forward) == ["a", "b"]


def test_a_2d_plan_slicing_along_another_axis_than_nnunets_is_refused():
    # nnU-Net transposes our x (its axis 2) first: it slices along x, our plan along z.
    with pytest.raises(ValueError, match="slices along our axis 0"):
        bench_configuration(_nnunet_plans((2, 0, 1)), OUR_2D)


def test_both_configurations_go_into_nnunets_plans_under_their_bench_names(tmp_path):
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(_nnunet_plans()))
    fullres = {"configuration": FULLRES, "spacing": [0.713, 0.713, 3.71], "patch_size": [64, 64, 16],
               "batch_size": 2, "filters": [16, 32], "strides": [[1, 1, 1], [2, 2, 1]],
               "kernels": [[3, 3, 1], [3, 3, 3]]}
    add_configuration(path, fullres)
    add_configuration(path, OUR_2D)
    configurations = json.loads(path.read_text())["configurations"]
    assert set(configurations) == {"2d", "3d_fullres", "3d_bench", "2d_bench"}
    assert configurations["3d_bench"]["patch_size"] == [16, 64, 64] and configurations["2d_bench"]["patch_size"] == [80, 96]
    assert nnunet_train.results_folder(tmp_path, "D", 0, "2d_bench").parts[-2] == "nnUNetTrainerBench__nnUNetPlans__2d_bench"


# --- our side: the config and the layout ------------------------------------------------------

def test_the_2d_network_is_sized_only_when_2d_is_trained():
    assert "2d" not in benchmark_plan(None, [FULLRES])  # the 3d_fullres benchmark's plan, as before
    assert benchmark_plan(None, [FULLRES, "2d"])["2d"] == DEFAULTS_2D
    assert benchmark_plan({"filters": 8}, ["2d"], {"batch_size": 4}) == {"filters": 8, "2d": {"batch_size": 4}}


def _dry_run(work: Path, config: dict, *targets) -> str:
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                           str(work), "--configfile", str(work / "config.yaml"), "--cores", "2", "--dry-run",
                           *map(str, targets)], capture_output=True, text=True, cwd=work, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("configurations", [[FULLRES], [FULLRES, "2d"]])
def test_what_the_benchmark_reads_is_what_the_workflow_writes(tmp_path, configurations):
    from unet.bench.hard_cases import NAME, generate_hard_dataset

    generate_hard_dataset(tmp_path / "data" / NAME, 3, seed=0)
    config = workflow_config(tmp_path, NAME, 0, 3, benchmark_plan(None, configurations), {"epochs": 1}, False,
                             configurations)
    assert config["configurations"] == configurations  # never `auto`: only what the benchmark trains
    for configuration in configurations:
        paths = our_outputs(config, configuration)
        dry = _dry_run(tmp_path, config, paths["predictions"], paths["training_log"])
        # Both targets are a rule's outputs, and the train and predict jobs time themselves where we read.
        assert f"benchmark: {paths['train_tsv']}" in dry and f"benchmark: {paths['predict_tsv']}" in dry
        assert f"wildcards: configuration={configuration}, fold=0" in dry
        assert paths["plans"].name == "plans.json" and paths["splits"].parent == paths["plans"].parent


# --- the joined report ------------------------------------------------------------------------

def _label(dice):
    return {"dice": dice, "pooled_dice": dice, "hd95_mm": 1.0, "cases": {}}


def _section(configuration, plan, dice_ours, dice_theirs, ours_time, theirs_time):
    network = {k: plan[k] for k in ("spacing", "patch_size", "batch_size", "filters", "strides", "kernels")}
    if plan.get("slice_axis") is not None:
        network["slice_axis"] = plan["slice_axis"]
    ours = {"plan": plan, "wall_s": 60.0, "rule_times": {"train": {"wall_s": 30.0, "cpu_s": 50.0},
                                                         "predict": {"wall_s": 5.0, "cpu_s": 6.0}},
            "epochs": [{"epoch": 0, "epoch_time_s": ours_time, "loss": 1.0, "runtime": {"onednn": True}}]}
    theirs = {"network": network, "transpose_forward": [0, 1, 2],
              "wall_s": {"plan": 5.0, "preprocess": 3.0, "train_and_predict": 90.0},
              "cpu_s": {"plan": 5.0, "preprocess": 3.0, "train_and_predict": 150.0},
              "epochs": [{"epoch": 0, "train_time_s": theirs_time, "epoch_time_s": theirs_time + 1, "loss": 1.0}]}
    settings = {"configuration": configuration, "n_cases": 20, "fold": 0, "epochs": 1, "steps_per_epoch": 50,
                "tta": False, "cores": 2, "validation_cases": ["a"], "date": "today", "load_average_before": [1.0],
                "load_average_between": [1.5], "load_average_after": [2.0]}
    machine = {"cpu": "CPU", "vector_extensions": ["avx2"], "threads": 2, "onednn": True}
    return build_report(ours, theirs, {k: _label(v) for k, v in dice_ours.items()},
                        {k: _label(v) for k, v in dice_theirs.items()}, settings, machine)


def _joined():
    fullres = {"spacing": [0.713, 0.713, 3.71], "patch_size": [64, 64, 16], "batch_size": 2, "filters": [16, 32],
               "strides": [[1, 1, 1], [2, 2, 1]], "kernels": [[3, 3, 1], [3, 3, 3]], "slice_axis": None}
    return combine_reports({
        FULLRES: _section(FULLRES, fullres, {"organ": 0.95, "vessel": 0.80}, {"organ": 0.96, "vessel": 0.70}, 10.0, 12.0),
        "2d": _section("2d", OUR_2D, {"organ": 0.93, "vessel": 0.60}, {"organ": 0.90, "vessel": 0.65}, 8.0, 6.0)})


def test_each_configuration_keeps_its_own_network_and_goals():
    report = _joined()
    two_d = report["configurations"]["2d"]
    assert two_d["same_network"] is True and two_d["network"]["slice_axis"] == 2
    assert "slice_axis" not in report["configurations"][FULLRES]["network"]
    goals = report["goals"]
    assert goals["3d_fullres: Dice >= nnU-Net's - 0.01 on every label"] is True
    assert goals["2d: Dice >= nnU-Net's - 0.01 on every label"] is False  # the vessel 0.60 against 0.65
    assert goals["2d: less time in training steps (median epoch)"] is False


def test_the_summary_puts_every_configurations_dice_side_by_side():
    lines = format_summary(_joined()).splitlines()
    assert lines[0] == "| label | 3d_fullres ours | 3d_fullres nnU-Net | 2d ours | 2d nnU-Net |"
    assert lines[2] == "| organ | 0.950 | 0.960 | 0.930 | 0.900 |"
    assert lines[3] == "| vessel | 0.800 | 0.700 | 0.600 | 0.650 |"
    assert lines[4] == "| median epoch (s) | 10.0 | 12.0 | 8.0 | 6.0 |"


def test_the_printed_report_has_each_configurations_table_then_the_summary():
    text = format_report(_joined())
    assert text.index("accuracy benchmark, 3d_fullres:") < text.index("accuracy benchmark, 2d:") < text.index("| label |")
    assert "batch 14, patch 96x80" in text
    single = format_report(copy.deepcopy(_joined()["configurations"][FULLRES]))
    assert "accuracy benchmark, 3d_fullres:" in single and "| label |" not in single


def test_configurations_the_benchmark_cannot_train_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--snakefile", "Snakefile", "--configurations", "3d_lowres"])
    assert "invalid choice" in capsys.readouterr().err
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").touch()
    with pytest.raises(ValueError, match="3d_lowres"):
        run_benchmark(venv, REPO / "Snakefile", configurations=["3d_lowres"], work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()
