"""nnU-Net v2's experiment planner on our fingerprint: the reference our planner's configurations
(`unet.preprocessing.planning`, `unet.preprocessing.configurations`) are tested against.

`run_nnunet_planner` writes each of our fingerprints as nnU-Net's dataset_fingerprint.json (its axes,
its key names) with a dataset.json that names no image to read, runs `nnUNetv2_plan_experiment`
from nnU-Net's own virtualenv in a fresh process, and returns the nnUNetPlans.json it wrote for each;
`configurations_in_our_axes` gives its configurations' sizes in our axis order and plans.json's
names. No image is read or written: the planner needs the fingerprint and dataset.json only.

Axes as in `unet.bench.nnunet_train`: nnU-Net's axes are ours reversed, then permuted by
`transpose_forward`; its 2d configuration holds the last two of those, and the first is the
slice axis.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Sequence

from unet.bench.nnunet_train import from_nnunet_axes, from_nnunet_plane, nnunet_env

DATASET_ID = 557
GPU_MEMORY_GB = 8.0      # nnU-Net's default target, the one its reference values were tuned for
FILE_ENDING = ".nii.gz"


def nnunet_fingerprint(fingerprint: dict) -> dict:
    """Our fingerprint as nnU-Net's dataset_fingerprint.json (per case spacing and cropped shape
    with the axes reversed; the foreground intensity statistics per channel)."""
    import numpy as np

    cases = fingerprint["cases"]
    names = {"mean": "mean", "median": "median", "std": "std", "min": "min", "max": "max",
             "percentile_99_5": "percentile_99_5", "percentile_00_5": "percentile_00_5"}
    return {
        "spacings": [[float(s) for s in c["spacing"][::-1]] for c in cases],
        "shapes_after_crop": [[int(n) for n in c["shape_after_crop"][::-1]] for c in cases],
        "median_relative_size_after_cropping": float(np.median([c["crop_fraction"] for c in cases])),
        "foreground_intensity_properties_per_channel": {
            str(i): {theirs: stats[ours] for ours, theirs in names.items()}
            for i, stats in enumerate(fingerprint["intensity"])},
    }


def nnunet_dataset_json(fingerprint: dict) -> dict:
    """A v2 dataset.json for the fingerprint's dataset; its reader is named, so that nnU-Net does
    not open an image to choose one."""
    return {"name": fingerprint["dataset"],
            "channel_names": {str(i): m for i, m in enumerate(fingerprint["modalities"])},
            "labels": {name: int(value) for value, name in sorted(fingerprint["labels"].items(),
                                                                   key=lambda kv: int(kv[0]))},
            "numTraining": len(fingerprint["cases"]), "file_ending": FILE_ENDING,
            "overwrite_image_reader_writer": "SimpleITKIO"}


def run_nnunet_planner(python: str | os.PathLike, fingerprints: Sequence[dict], work: str | os.PathLike,
                       gpu_memory_gb: float = GPU_MEMORY_GB, first_id: int = DATASET_ID) -> list[dict]:
    """nnU-Net v2's default ExperimentPlanner (`nnUNetv2_plan_experiment`, run with `python`'s
    virtualenv, one process for all) on each of `fingerprints`, as datasets `first_id`, ... in
    the folder `work`; the plans it wrote for each."""
    work = Path(work)
    plans_files = []
    for dataset_id, fingerprint in enumerate(fingerprints, first_id):
        folder = f"Dataset{dataset_id:03d}_{fingerprint['dataset']}"
        raw, preprocessed = work / "nnUNet_raw" / folder, work / "nnUNet_preprocessed" / folder
        (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
        preprocessed.mkdir(parents=True, exist_ok=True)
        # One (empty) file: the planner lists imagesTr to name the cases, and reads none of them.
        (raw / "imagesTr" / f"case_000_0000{FILE_ENDING}").touch()
        (raw / "dataset.json").write_text(json.dumps(nnunet_dataset_json(fingerprint)))
        (preprocessed / "dataset_fingerprint.json").write_text(json.dumps(nnunet_fingerprint(fingerprint)))
        plans_files.append(preprocessed / "nnUNetPlans.json")
        plans_files[-1].unlink(missing_ok=True)  # the planner keeps configurations of an existing file
    ids = [str(i) for i in range(first_id, first_id + len(fingerprints))]
    cmd = [str(Path(python).parent / "nnUNetv2_plan_experiment"), "-d", *ids, "-gpu_memory_target", str(gpu_memory_gb)]
    done = subprocess.run(cmd, env=nnunet_env(work, 1), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return [json.loads(f.read_text()) for f in plans_files]


def configurations_in_our_axes(plans: dict) -> dict[str, dict]:
    """Each configuration of nnU-Net's `plans` with plans.json's names in our axis order: spacing,
    median_shape, patch_size, batch_size, filters, strides, kernels; 2d also its slice_axis (the
    in-plane axes in our order); 3d_cascade_fullres is 3d_fullres with its previous_stage."""
    forward = plans["transpose_forward"]
    out = {}
    for name, config in plans["configurations"].items():
        if "inherits_from" in config:
            continue
        kwargs = config["architecture"]["arch_kwargs"]
        per_axis = from_nnunet_plane if len(config["spacing"]) == 2 else from_nnunet_axes
        out[name] = {"spacing": per_axis(config["spacing"], forward),
                     "median_shape": per_axis(config["median_image_size_in_voxels"], forward),
                     "patch_size": per_axis(config["patch_size"], forward),
                     "batch_size": config["batch_size"], "filters": list(kwargs["features_per_stage"]),
                     "strides": [per_axis(s, forward) for s in kwargs["strides"]],
                     "kernels": [per_axis(k, forward) for k in kwargs["kernel_sizes"]]}
        if per_axis is from_nnunet_plane:
            out[name]["slice_axis"] = 2 - int(forward[0])
    for name, config in plans["configurations"].items():
        if "inherits_from" in config:
            out[name] = {**out[config["inherits_from"]], "previous_stage": config["previous_stage"]}
    return out
