"""nnU-Net v2's side of the accuracy benchmark: our plan as a configuration of its plans, our
split as its splits_final.json, a trainer limited to our number of steps, and its CLI
(`nnUNetv2_plan_and_preprocess --no_pp`, `nnUNetv2_preprocess`, `nnUNetv2_train`) run from its
own virtualenv with the folders it reads from environment variables.

Axes: nnU-Net reads a NIfTI file with SimpleITK, which reverses the axes (z, y, x), then permutes
them by its plans' `transpose_forward`; our arrays are in canonical RAS order. For files stored
in RAS order (the benchmark writes its cases so), nnU-Net's axis t is our axis
2 - transpose_forward[t] (`to_nnunet_axes`; `from_nnunet_axes` goes back). Its 2d configuration
slices along its first axis, our 2 - transpose_forward[0], and holds the other two
(`to_nnunet_plane`, `from_nnunet_plane`); our 2d plan's `slice_axis` must be that axis.

Each of our configurations becomes one of its plans (`BENCH_NAMES`: 3d_fullres as `3d_bench`, 2d
as `2d_bench`), copied from nnU-Net's own configuration of that name with our sizes.

The trainer is a module written at run time into the benchmark's work folder; `nnUNetv2_train`'s
entry point runs through `unet.bench.nnunet_worker` (`train`), which makes nnU-Net's lookup of
trainers by class name find it first. Nothing is written into the virtualenv.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Sequence

CONFIGURATION = "3d_bench"
BENCH_NAMES = {"3d_fullres": CONFIGURATION, "2d": "2d_bench"}  # our configuration -> its name in nnU-Net's plans
TRAINER = "nnUNetTrainerBench"
BASE_CONFIGURATION = "3d_fullres"  # a plan without `configuration` is ours of this name
EPOCH_LOG = "bench_epochs.jsonl"   # the trainer's per-epoch times, in its output folder


# --- plans --------------------------------------------------------------------------------------

def to_nnunet_axes(values: Sequence, transpose_forward: Sequence[int]) -> list:
    """Per-axis `values` in our axis order, in nnU-Net's (see the module's docstring)."""
    return [values[2 - int(t)] for t in transpose_forward]


def from_nnunet_axes(values: Sequence, transpose_forward: Sequence[int]) -> list:
    """Per-axis `values` in nnU-Net's axis order, in ours."""
    out = [None] * 3
    for t, axis in enumerate(transpose_forward):
        out[2 - int(axis)] = values[t]
    return out


def to_nnunet_plane(values: Sequence, transpose_forward: Sequence[int], slice_axis: int) -> list:
    """A 2d plan's per-axis `values` (our axes other than `slice_axis`, in order) in the order of
    nnU-Net's 2d configuration (its axes transpose_forward[1:]); an error when nnU-Net would slice
    along another axis than ours."""
    theirs = 2 - int(transpose_forward[0])
    if theirs != int(slice_axis):
        raise ValueError(f"nnU-Net's 2d slices along our axis {theirs} (transpose_forward {list(transpose_forward)}), "
                         f"our 2d plan along axis {slice_axis}: the two 2d networks would see different slices")
    ours = dict(zip((a for a in range(3) if a != int(slice_axis)), values))
    return [ours[2 - int(t)] for t in transpose_forward[1:]]


def from_nnunet_plane(values: Sequence, transpose_forward: Sequence[int]) -> list:
    """A 2d configuration's per-axis values (nnU-Net's axes transpose_forward[1:]) in our order."""
    return [v for _, v in sorted(zip((2 - int(t) for t in transpose_forward[1:]), values))]


def bench_configuration(nnunet_plans: dict, plan: dict, name: str | None = None) -> dict:
    """A configuration of nnU-Net's plans with our plan's (a plans.json record) spacing, patch,
    batch, filters, strides and kernels, in nnU-Net's axis order; the rest (normalization,
    resampling, batch Dice, the network's blocks) is nnU-Net's own configuration of the same kind
    (`plan["configuration"]`: 3d_fullres or 2d). `name` defaults to BENCH_NAMES'."""
    forward = nnunet_plans["transpose_forward"]
    base = plan.get("configuration") or BASE_CONFIGURATION
    name = name or BENCH_NAMES[base]
    if base == "2d":
        def axes(values):
            return to_nnunet_plane(values, forward, plan["slice_axis"])
    else:
        def axes(values):
            return to_nnunet_axes(values, forward)
    config = copy.deepcopy(nnunet_plans["configurations"][base])
    config.pop("inherits_from", None)
    levels = len(plan["filters"])
    config.update({
        "data_identifier": f"{nnunet_plans.get('plans_name', 'nnUNetPlans')}_{name}",
        "batch_size": int(plan["batch_size"]),
        "patch_size": [int(p) for p in axes(plan["patch_size"])],
        "spacing": [float(s) for s in axes(plan["spacing"])],
    })
    if plan.get("median_shape"):
        config["median_image_size_in_voxels"] = [int(n) for n in axes(plan["median_shape"])]
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs.update({
        "n_stages": levels,
        "features_per_stage": [int(f) for f in plan["filters"]],
        "strides": [[int(s) for s in axes(level)] for level in plan["strides"]],
        "kernel_sizes": [[int(k) for k in axes(level)] for level in plan["kernels"]],
        "n_conv_per_stage": [2] * levels,           # our blocks per level, encoder and decoder
        "n_conv_per_stage_decoder": [2] * (levels - 1),
    })
    return config


def network_in_our_axes(config: dict, transpose_forward: Sequence[int]) -> dict:
    """The sizes of an nnU-Net configuration in our axis order and plans.json's names (a 2d one's
    also its slice_axis)."""
    kwargs = config["architecture"]["arch_kwargs"]
    planar = len(config["spacing"]) == 2

    def axes(values):
        return from_nnunet_plane(values, transpose_forward) if planar else from_nnunet_axes(values, transpose_forward)

    network = {"spacing": axes(config["spacing"]), "patch_size": axes(config["patch_size"]),
               "batch_size": config["batch_size"], "filters": list(kwargs["features_per_stage"]),
               "strides": [axes(s) for s in kwargs["strides"]], "kernels": [axes(k) for k in kwargs["kernel_sizes"]]}
    return {**network, "slice_axis": 2 - int(transpose_forward[0])} if planar else network


def add_configuration(plans_path: str | os.PathLike, plan: dict, name: str | None = None) -> dict:
    """Add `bench_configuration` to nnU-Net's plans file; returns the configuration."""
    path = Path(plans_path)
    plans = json.loads(path.read_text())
    config = bench_configuration(plans, plan, name)
    plans["configurations"][name or BENCH_NAMES[plan.get("configuration") or BASE_CONFIGURATION]] = config
    path.write_text(json.dumps(plans, indent=1))
    return config


def write_splits(splits: list[dict], case_ids: Sequence[str], path: str | os.PathLike) -> None:
    """Our splits.json as nnU-Net's splits_final.json (the same list of {"train", "val"}), after
    checking that every case it names is one of nnU-Net's."""
    known = set(case_ids)
    unknown = sorted({c for fold in splits for part in ("train", "val") for c in fold[part]} - known)
    if unknown:
        raise ValueError(f"splits name cases nnU-Net does not have: {unknown[:5]}")
    Path(path).write_text(json.dumps([{"train": list(f["train"]), "val": list(f["val"])} for f in splits],
                                     indent=1))


# --- the trainer ----------------------------------------------------------------------------------

_TRAINER_SOURCE = '''"""Written by unet.bench.nnunet_train: nnU-Net's default trainer, limited to the benchmark's
steps, logging the time of each epoch's training steps to {epoch_log}."""
import json
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {trainer}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {steps}
        self.num_val_iterations_per_epoch = {val_steps}

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        result = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not {mirroring}:
            self.inference_allowed_mirroring_axes = None  # no mirroring at prediction
        return result

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._bench_start = time.perf_counter()

    def on_train_epoch_end(self, train_outputs):
        self._bench_train_s = time.perf_counter() - self._bench_start
        super().on_train_epoch_end(train_outputs)

    def on_epoch_end(self):
        super().on_epoch_end()
        epoch = self.current_epoch - 1
        row = {{"epoch": epoch, "train_time_s": self._bench_train_s,
               "epoch_time_s": self.logger.get_value("epoch_end_timestamps", step=-1)
               - self.logger.get_value("epoch_start_timestamps", step=-1),
               "loss": float(self.logger.get_value("train_losses", step=-1)),
               "pseudo_dice": [float(d) for d in self.logger.get_value("dice_per_class_or_region", step=-1)]}}
        with open(self.output_folder + "/{epoch_log}", "a") as f:
            f.write(json.dumps(row) + "\\n")
'''


def write_trainer(folder: str | os.PathLike, epochs: int, steps: int, val_steps: int, mirroring: bool) -> Path:
    """The trainer module `{folder}/bench_trainer.py` (class TRAINER)."""
    path = Path(folder) / "bench_trainer.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_TRAINER_SOURCE.format(trainer=TRAINER, epochs=int(epochs), steps=int(steps),
                                           val_steps=int(val_steps), mirroring=bool(mirroring),
                                           epoch_log=EPOCH_LOG))
    return path


# --- running it -----------------------------------------------------------------------------------

def nnunet_env(work: Path, cores: int) -> dict:
    """The environment of nnU-Net's commands: its three folders under `work` and `cores` data
    augmentation processes (else it picks a number by host name)."""
    return {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"),
            "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
            "nnUNet_results": str(work / "nnUNet_results"), "nnUNet_n_proc_DA": str(cores),
            "PYTHONUNBUFFERED": "1"}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_logged(cmd: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Run `cmd` with its output in `log`; its wall time and the CPU time (s) of it and the
    processes it waited for (its data loaders), or an error with the log's tail."""
    start, cpu = time.perf_counter(), _children_cpu_s()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n"
                           f"{log.read_text()[-4000:]}")
    return time.perf_counter() - start, _children_cpu_s() - cpu


def results_folder(work: Path, dataset_folder: str, fold: int = 0, name: str = CONFIGURATION) -> Path:
    """Where `nnUNetv2_train` writes fold `fold` of configuration `name` (checkpoints, validation/,
    EPOCH_LOG)."""
    return work / "nnUNet_results" / dataset_folder / f"{TRAINER}__nnUNetPlans__{name}" / f"fold_{fold}"


def plan_nnunet(python: str | os.PathLike, work: Path, dataset_id: int, dataset_folder: str, splits: list[dict],
                case_ids: Sequence[str], cores: int) -> dict:
    """nnU-Net's fingerprint and plans (not preprocessed) and our split as its splits_final.json;
    the raw dataset must already be under work/nnUNet_raw. Returns the command's wall and CPU
    time and the plans' transpose_forward."""
    wall, cpu = run_logged([str(Path(python).parent / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id),
                            "--no_pp", "-npfp", str(cores)], nnunet_env(work, cores), work / "nnunet_plan.log")
    pre = work / "nnUNet_preprocessed" / dataset_folder
    write_splits(splits, case_ids, pre / "splits_final.json")
    return {"wall_s": wall, "cpu_s": cpu,
            "transpose_forward": json.loads((pre / "nnUNetPlans.json").read_text())["transpose_forward"]}


def run_nnunet_configuration(python: str | os.PathLike, work: Path, dataset_id: int, dataset_folder: str,
                             planned: dict, plan: dict, fold: int, epochs: int, steps: int, val_steps: int,
                             mirroring: bool, cores: int) -> dict:
    """After `plan_nnunet` (`planned`): add our `plan` (a plans.json record) to nnU-Net's plans,
    preprocess it, train fold `fold` on the CPU with the benchmark's trainer and predict the fold's
    validation cases (nnUNetv2_train does).

    Returns the wall and CPU time of each command (plan: `planned`'s), the configuration in our
    axes, the per-epoch rows of the trainer and the folder of the validation predictions (the raw
    grid, {case}.nii.gz)."""
    from unet.bench.nnunet_worker import command

    bin_dir = Path(python).parent
    env = nnunet_env(work, cores)
    name = BENCH_NAMES[plan.get("configuration") or BASE_CONFIGURATION]
    single = name == CONFIGURATION  # the log names of the 3d_fullres-only benchmark, kept
    pre = work / "nnUNet_preprocessed" / dataset_folder
    config = add_configuration(pre / "nnUNetPlans.json", plan, name)
    times = {"plan": (planned["wall_s"], planned["cpu_s"]),
             "preprocess": run_logged([str(bin_dir / "nnUNetv2_preprocess"), "-d", str(dataset_id), "-c", name,
                                       "-np", str(cores)], env,
                                      work / ("nnunet_preprocess.log" if single else f"nnunet_preprocess_{name}.log"))}
    trainer = write_trainer(work / "nnunet_trainer" / name, epochs, steps, val_steps, mirroring)
    out = results_folder(work, dataset_folder, fold, name)
    if (out / EPOCH_LOG).exists():
        (out / EPOCH_LOG).unlink()  # a kept work folder: only this run's epochs
    times["train_and_predict"] = run_logged(
        command(python, "train", str(trainer), str(dataset_id), name, str(fold), "-tr", TRAINER, "-device", "cpu"),
        env, work / ("nnunet_train.log" if single else f"nnunet_train_{name}.log"))
    rows = [json.loads(line) for line in (out / EPOCH_LOG).read_text().splitlines() if line.strip()]
    forward = planned["transpose_forward"]
    return {"wall_s": {k: wall for k, (wall, _) in times.items()},
            "cpu_s": {k: cpu for k, (_, cpu) in times.items()}, "network": network_in_our_axes(config, forward),
            "transpose_forward": forward, "epochs": rows, "predictions": str(out / "validation")}


def run_nnunet_training(python: str | os.PathLike, work: Path, dataset_id: int, dataset_folder: str,
                        plan: dict, splits: list[dict], case_ids: Sequence[str], fold: int, epochs: int,
                        steps: int, val_steps: int, mirroring: bool, cores: int) -> dict:
    """`plan_nnunet`, then `run_nnunet_configuration` of our `plan`."""
    planned = plan_nnunet(python, work, dataset_id, dataset_folder, splits, case_ids, cores)
    return run_nnunet_configuration(python, work, dataset_id, dataset_folder, planned, plan, fold, epochs, steps,
                                    val_steps, mirroring, cores)
