"""The accuracy benchmark's pieces that need no nnU-Net: the generated hard dataset, our plan as
an nnU-Net configuration (axes reversed), the split, the trainer file, scoring and the report."""

import itertools
import json
import sys
import types

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from unet.bench import nnunet_train
from unet.bench.accuracy import workflow_config
from unet.bench.accuracy_report import DICE_MARGIN, build_report, format_report, score
from unet.bench.hard_cases import (LABELS, LESION, MODALITIES, ORGAN, VESSEL, case_geometry, generate_hard_dataset,
                                   hard_case)
from unet.bench.nnunet_train import (add_configuration, bench_configuration, from_nnunet_axes, network_in_our_axes,
                                     to_nnunet_axes, write_splits, write_trainer)
from unet.io.msd import load_dataset
from unet.io.nifti import save_nifti

OUR_PLAN = {"spacing": [0.713, 0.713, 3.71], "patch_size": [64, 48, 16], "batch_size": 2,
            "filters": [16, 32, 64, 128], "median_shape": [90, 87, 26],
            "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2]],
            "kernels": [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3]]}


def _nnunet_plans(transpose_forward=(0, 1, 2)):
    """The parts of an nnUNetPlans.json the conversion reads (values as nnU-Net plans them)."""
    return {"plans_name": "nnUNetPlans", "transpose_forward": list(transpose_forward),
            "configurations": {"3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2, "patch_size": [24, 96, 96],
                "spacing": [3.71, 0.713, 0.713], "median_image_size_in_voxels": [26, 87, 90],
                "normalization_schemes": ["ZScoreNormalization"] * 2, "batch_dice": False,
                "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                 "arch_kwargs": {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                                                 "strides": [[1, 1, 1]] + [[1, 2, 2]] * 5,
                                                 "kernel_sizes": [[1, 3, 3]] * 6, "n_conv_per_stage": [2] * 6,
                                                 "n_conv_per_stage_decoder": [2] * 5, "conv_bias": True},
                                 "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}}}


# --- the dataset ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cases():
    return [hard_case(i, seed=0) for i in range(3)]


def test_cases_have_thick_slices_on_the_last_axis_and_two_channels(cases):
    for i, (image, label, affine) in enumerate(cases):
        shape, spacing = case_geometry(i)
        assert image.shape == (*shape, 2) and image.dtype == np.int16 and label.shape == shape
        assert 85 <= shape[0] <= 110 and 85 <= shape[1] <= 110 and 20 <= shape[2] <= 28
        np.testing.assert_allclose(np.diag(affine)[:3], spacing)
        assert spacing[2] > 3 * spacing[0] and spacing[0] == spacing[1] and 0.6 < spacing[0] < 0.8
        assert len(MODALITIES) == 2 and sorted(np.unique(label)) == sorted(LABELS)
        assert image.min() == 0 and (image[label > 0] > 0).all()  # zero outside the body only


def test_structures_are_small_and_classes_imbalanced(cases):
    for image, label, _ in cases:
        fraction = {v: float((label == v).mean()) for v in LABELS}
        assert fraction[0] > 0.8 and 0.03 < fraction[ORGAN] < 0.2
        assert fraction[VESSEL] < 0.005 and fraction[LESION] < 0.005
        lesions, n = ndimage.label(label == LESION)
        sizes = ndimage.sum(np.ones_like(label), lesions, range(1, n + 1))
        assert 1 <= n <= 3 and all(100 <= s <= 1000 for s in sizes), sizes  # a few hundred voxels each
        # The vessel is one thin tube through (nearly) every slice: a few voxels across in each.
        vessel = label == VESSEL
        assert ndimage.label(vessel)[1] == 1
        per_slice = vessel.sum(axis=(0, 1))
        assert (per_slice > 0).mean() >= 0.8 and per_slice.max() <= 40


def test_lesions_and_cysts_need_both_channels(cases):
    image, label, _ = cases[0]
    organ, lesion = label == ORGAN, label == LESION
    # Lesions: brighter than the organ in channel 1, not in channel 0.
    assert image[..., 1][lesion].mean() > 1.3 * image[..., 1][organ].mean()
    assert image[..., 0][lesion].mean() < image[..., 0][organ].mean()


def test_a_case_is_a_function_of_its_seed_and_index():
    a, b, c = hard_case(1, seed=3), hard_case(1, seed=3), hard_case(1, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_the_dataset_is_in_msd_layout_with_the_coarse_axis_last_on_disk(tmp_path):
    root = generate_hard_dataset(tmp_path / "Bench", 2, seed=0)
    dataset = load_dataset(root)
    assert [c.id for c in dataset.training] == ["VESSEL_000", "VESSEL_001"]
    assert dataset.modalities == MODALITIES and dataset.labels == LABELS
    img = nib.load(str(dataset.training[0].image))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S") and img.shape[-1] == 2
    assert np.argmax(img.header.get_zooms()[:3]) == 2
    # What nnU-Net's reader sees: the axes reversed, the thick one first.
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset.training[0].label)))
    assert label.shape == nib.load(str(dataset.training[0].label)).shape[::-1]


# --- our plan as nnU-Net's configuration ------------------------------------------------------

@pytest.mark.parametrize("forward", list(itertools.permutations(range(3))))
def test_axis_conversion_round_trips(forward):
    values = ["x", "y", "z"]
    assert from_nnunet_axes(to_nnunet_axes(values, forward), forward) == values


def test_with_nnunets_default_transpose_the_axes_are_reversed():
    assert to_nnunet_axes([64, 48, 16], [0, 1, 2]) == [16, 48, 64]


def test_the_configuration_has_our_network_in_reversed_axes_and_nnunets_other_settings():
    plans = _nnunet_plans()
    config = bench_configuration(plans, OUR_PLAN)
    assert config["patch_size"] == [16, 48, 64] and config["spacing"] == [3.71, 0.713, 0.713]
    assert config["median_image_size_in_voxels"] == [26, 87, 90]
    kwargs = config["architecture"]["arch_kwargs"]
    assert kwargs["strides"] == [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]]
    assert kwargs["kernel_sizes"] == [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert kwargs["n_stages"] == 4 and kwargs["features_per_stage"] == [16, 32, 64, 128]
    assert kwargs["n_conv_per_stage"] == [2] * 4 and kwargs["n_conv_per_stage_decoder"] == [2] * 3
    assert config["data_identifier"] == "nnUNetPlans_3d_bench"  # preprocessed apart from 3d_fullres
    assert config["normalization_schemes"] == ["ZScoreNormalization"] * 2 and kwargs["conv_bias"] is True
    assert plans["configurations"]["3d_fullres"]["patch_size"] == [24, 96, 96]  # the original untouched


@pytest.mark.parametrize("forward", [(0, 1, 2), (2, 0, 1), (1, 0, 2)])
def test_the_configuration_read_back_in_our_axes_is_our_network(forward):
    config = bench_configuration(_nnunet_plans(forward), OUR_PLAN)
    back = network_in_our_axes(config, forward)
    assert back == {k: OUR_PLAN[k] for k in back}


def test_add_configuration_writes_it_into_the_plans_file(tmp_path):
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(_nnunet_plans()))
    add_configuration(path, OUR_PLAN, "3d_bench")
    configurations = json.loads(path.read_text())["configurations"]
    assert set(configurations) == {"3d_fullres", "3d_bench"}
    assert configurations["3d_bench"]["batch_size"] == 2


def test_our_split_becomes_nnunets_split_file(tmp_path):
    splits = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["a", "c"], "val": ["b"]}]
    write_splits(splits, ["a", "b", "c"], tmp_path / "splits_final.json")
    assert json.loads((tmp_path / "splits_final.json").read_text()) == splits
    with pytest.raises(ValueError, match="'c'"):
        write_splits(splits, ["a", "b"], tmp_path / "other.json")


# --- the trainer file -------------------------------------------------------------------------

class _FakeLogger:
    def __init__(self):
        self.values = {"epoch_start_timestamps": [10.0], "epoch_end_timestamps": [14.5], "train_losses": [0.7],
                       "dice_per_class_or_region": [[0.5, 0.25]]}

    def get_value(self, key, step):
        return self.values[key][step]


class _FakeNnUNetTrainer:
    """The parts of nnU-Net's trainer the benchmark's subclass calls."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None):
        self.output_folder, self.current_epoch, self.logger = plans["folder"], 0, _FakeLogger()
        self.num_epochs = self.num_iterations_per_epoch = self.num_val_iterations_per_epoch = None

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        self.inference_allowed_mirroring_axes = (0, 1, 2)
        return "rotation", False, [16, 64, 64], (0, 1, 2)

    def on_train_epoch_start(self):
        pass

    def on_train_epoch_end(self, outputs):
        pass

    def on_epoch_end(self):
        self.current_epoch += 1


@pytest.fixture
def fake_nnunet(monkeypatch):
    module = types.ModuleType("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    module.nnUNetTrainer = _FakeNnUNetTrainer
    torch = types.ModuleType("torch")
    torch.device = lambda name: name
    for name in ("nnunetv2", "nnunetv2.training", "nnunetv2.training.nnUNetTrainer"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "nnunetv2.training.nnUNetTrainer.nnUNetTrainer", module)
    monkeypatch.setitem(sys.modules, "torch", torch)


@pytest.mark.parametrize("mirroring", [True, False])
def test_the_trainer_runs_our_steps_and_logs_each_epochs_time(tmp_path, fake_nnunet, mirroring):
    path = write_trainer(tmp_path / "trainers", epochs=7, steps=25, val_steps=16, mirroring=mirroring)
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    trainer = namespace[nnunet_train.TRAINER]({"folder": str(tmp_path)}, "3d_bench", 0, {}, "cpu")
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (7, 25, 16)
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert trainer.inference_allowed_mirroring_axes == ((0, 1, 2) if mirroring else None)
    trainer.on_train_epoch_start()
    trainer.on_train_epoch_end([])
    trainer.on_epoch_end()
    row = json.loads((tmp_path / nnunet_train.EPOCH_LOG).read_text())
    assert row["epoch"] == 0 and row["epoch_time_s"] == 4.5 and 0 <= row["train_time_s"] < 1
    assert row["loss"] == 0.7 and row["pseudo_dice"] == [0.5, 0.25]


def test_a_command_is_timed_in_wall_and_cpu_seconds_with_its_children(tmp_path):
    busy = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(range(3 * 10**7))'])"
    wall, cpu = nnunet_train.run_logged([sys.executable, "-c", busy], {}, tmp_path / "log")
    assert cpu > 0.2 and wall > 0  # the grandchild's summing counted, not just the parent's start-up
    with pytest.raises(RuntimeError, match="exit 3"):
        nnunet_train.run_logged([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "log")


def test_nnunets_commands_get_their_folders_and_our_cores(tmp_path):
    env = nnunet_train.nnunet_env(tmp_path, 2)
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
    assert env["nnUNet_n_proc_DA"] == "2"
    assert nnunet_train.results_folder(tmp_path, "Dataset556_X").parts[-3:] == (
        "Dataset556_X", "nnUNetTrainerBench__nnUNetPlans__3d_bench", "fold_0")


# --- our side, scoring and the report ---------------------------------------------------------

def test_our_run_predicts_one_fold_of_the_generated_task(tmp_path):
    config = workflow_config(tmp_path, "BenchVessels", 0, 5, {"patch_size": [64, 64, 16]}, {"epochs": 2}, True)
    assert config["folds"] == [0] and config["data_dir"] == str(tmp_path / "data")
    assert config["predict"] == {"tta": True} and config["plan"] == {"patch_size": [64, 64, 16]}


def test_score_gives_each_labels_mean_and_pooled_dice(tmp_path):
    from unet.io.msd import write_dataset_json

    root, preds = tmp_path / "data", tmp_path / "preds"
    ref = np.zeros((6, 6, 4), np.uint8)
    ref[1:3, 1:3, 1] = 1   # 4 voxels of label 1
    ref[4, 4, 2] = 2
    pred = ref.copy()
    pred[1, 1, 1] = 0      # one voxel of label 1 missed: Dice 6/7
    for cid, prediction in (("a", pred), ("b", ref)):
        save_nifti(root / "imagesTr" / f"{cid}.nii.gz", np.zeros((6, 6, 4, 2), np.int16), np.eye(4))
        save_nifti(root / "labelsTr" / f"{cid}.nii.gz", ref, np.eye(4))
        save_nifti(preds / f"{cid}.nii.gz", prediction, np.eye(4))
    write_dataset_json(root, "T", list(MODALITIES), {0: "background", 1: "one", 2: "two"}, ["a", "b"], [])

    result = score(preds, root, ["a", "b"], fold=0)

    assert result["one"]["dice"] == pytest.approx((6 / 7 + 1) / 2)
    assert result["one"]["pooled_dice"] == pytest.approx(14 / 15)
    assert result["one"]["cases"] == {"a": pytest.approx(6 / 7), "b": 1.0} and result["two"]["dice"] == 1.0


def _label(dice):
    return {"dice": dice, "pooled_dice": dice, "hd95_mm": 2.0, "cases": {}}


def _report(dice_ours, dice_theirs, ours_time=1.0, theirs_time=2.0):
    network = {k: OUR_PLAN[k] for k in ("spacing", "patch_size", "batch_size", "filters", "strides", "kernels")}
    ours = {"plan": OUR_PLAN, "wall_s": 60.0, "rule_times": {"train": {"wall_s": 30.0, "cpu_s": 50.0},
                                                             "predict": {"wall_s": 5.0, "cpu_s": 6.0}},
            "epochs": [{"epoch": 0, "epoch_time_s": ours_time, "loss": 1.0, "runtime": {"onednn": True}}]}
    theirs = {"network": network, "transpose_forward": [0, 1, 2], "wall_s": {"plan": 5.0, "train_and_predict": 90.0},
              "cpu_s": {"plan": 5.0, "train_and_predict": 150.0},
              "epochs": [{"epoch": 0, "train_time_s": theirs_time, "epoch_time_s": theirs_time + 1, "loss": 1.0}]}
    settings = {"n_cases": 20, "fold": 0, "epochs": 1, "steps_per_epoch": 50, "tta": True, "cores": 2,
                "validation_cases": ["a"], "date": "today", "load_average_before": [1.0], "load_average_between": [1.5],
                "load_average_after": [2.0]}
    machine = {"cpu": "CPU", "vector_extensions": ["avx2"], "threads": 2, "onednn": True}
    return build_report(ours, theirs, {k: _label(v) for k, v in dice_ours.items()},
                        {k: _label(v) for k, v in dice_theirs.items()}, settings, machine)


def test_the_report_checks_every_label_against_nnunet_within_the_margin():
    report = _report({"vessel": 0.70, "lesion": 0.50}, {"vessel": 0.70 + DICE_MARGIN / 2, "lesion": 0.40})
    assert report["goals"]["Dice >= nnU-Net's - 0.01 on every label"] is True
    assert report["goals"]["less time in training steps (median epoch)"] is True and report["same_network"] is True
    worse = _report({"vessel": 0.70, "lesion": 0.50}, {"vessel": 0.72, "lesion": 0.40}, ours_time=3.0)
    assert worse["goals"]["Dice >= nnU-Net's - 0.01 on every label"] is False
    assert worse["goals"]["less time in training steps (median epoch)"] is False


def test_the_table_shows_both_sides_per_label():
    text = format_report(_report({"vessel": 0.7, "lesion": 0.5}, {"vessel": 0.6, "lesion": 0.4}))
    vessel = next(line for line in text.splitlines() if line.strip().startswith("vessel"))
    assert "0.700" in vessel and "0.600" in vessel
    assert "CPU (s): ours train_job 50.0, predict_job 6.0; nnU-Net train_and_predict 150.0" in text
    assert "avx2" in text and "oneDNN on" in text and "median epoch ours 1.0 s, nnU-Net 2.0 s (ratio 0.50)" in text


def test_the_worker_runs_nnunets_train_entry_with_our_trainer_found_first(tmp_path, monkeypatch):
    from unet.bench import nnunet_worker

    seen = {}
    run_training = types.ModuleType("nnunetv2.run.run_training")
    run_training.recursive_find_trainer_class_by_name = lambda name: f"nnU-Net's {name}"

    def entry():
        seen["argv"] = list(sys.argv)
        seen["ours"] = run_training.recursive_find_trainer_class_by_name("Mine")
        seen["theirs"] = run_training.recursive_find_trainer_class_by_name("nnUNetTrainer")

    run_training.run_training_entry = entry
    for name in ("nnunetv2", "nnunetv2.run"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "nnunetv2.run.run_training", run_training)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    trainer = tmp_path / "mine.py"
    trainer.write_text("class Mine:\n    pass\n")

    assert nnunet_worker.main(["train", str(trainer), "556", "3d_bench", "0", "-tr", "Mine", "-device", "cpu"]) == 0

    assert seen["argv"] == ["nnUNetv2_train", "556", "3d_bench", "0", "-tr", "Mine", "-device", "cpu"]
    assert seen["ours"].__name__ == "Mine" and seen["theirs"] == "nnU-Net's nnUNetTrainer"
