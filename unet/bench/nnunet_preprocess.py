"""nnU-Net v2's side of the preprocessing benchmark: the dataset in its raw layout, its
`nnUNetv2_plan_and_preprocess` in a fresh process from its own virtualenv, and its outputs read
back as .npy (by `unet.bench.nnunet_worker` in that virtualenv, which has blosc2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

DATASET_ID = 555


def _convert_case(args) -> None:
    import nibabel as nib

    from unet.io.nifti import save_nifti

    case, images_dir, labels_dir, ending = args
    img = nib.load(str(case.image))
    data = np.asanyarray(img.dataobj)  # stored dtype: no scaling in these files
    data = data[..., None] if data.ndim == 3 else data
    for c in range(data.shape[-1]):
        save_nifti(images_dir / f"{case.id}_{c:04d}{ending}", data[..., c], img.affine)
    shutil.copyfile(case.label, labels_dir / f"{case.id}{ending}")


def to_nnunet_raw(msd_root: str | Path, raw_root: str | Path, dataset_id: int = DATASET_ID,
                  workers: int = 1) -> Path:
    """Convert an MSD-layout dataset to nnU-Net v2's raw layout under `raw_root`:
    Dataset{id:03d}_{name}/imagesTr/{case}_{channel:04d}.nii.gz, labelsTr/{case}.nii.gz and a v2
    dataset.json (channel_names, labels by name, numTraining, file_ending). Returns that folder."""
    from concurrent.futures import ProcessPoolExecutor

    from unet.io.atomic import write_json
    from unet.io.msd import load_dataset

    dataset = load_dataset(msd_root)
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{dataset.name}"
    images, labels = folder / "imagesTr", folder / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    ending = ".nii.gz"
    jobs = [(case, images, labels, ending) for case in dataset.training]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(_convert_case, jobs))
    write_json(folder / "dataset.json", {
        "name": dataset.name,
        "channel_names": {str(i): m for i, m in enumerate(dataset.modalities)},
        "labels": {name: value for value, name in sorted(dataset.labels.items())},
        "numTraining": len(dataset.training),
        "file_ending": ending,
    })
    return folder


def run_nnunet(python: str | Path, raw_root: Path, work_dir: Path, dataset_id: int, cores: int,
               log: Path) -> dict:
    """`nnUNetv2_plan_and_preprocess` in a fresh process; wall time and stage times (s), the
    stages timed from the moments its progress messages appear."""
    env = {**os.environ, "nnUNet_raw": str(raw_root),
           "nnUNet_preprocessed": str(work_dir / "nnUNet_preprocessed"),
           "nnUNet_results": str(work_dir / "nnUNet_results"), "PYTHONUNBUFFERED": "1"}
    cmd = [str(Path(python).parent / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id),
           "-c", "3d_fullres", "-np", str(cores), "-npfp", str(cores), "--verify_dataset_integrity",
           "--no_pbar"]
    # Each message ends the stage named here (verify_dataset_integrity runs before the fingerprint).
    markers = {"Fingerprint extraction...": "startup", "verify_dataset_integrity Done.": "validate",
               "Experiment planning...": "fingerprint", "Preprocessing...": "plan"}
    stages, last = {}, 0.0
    start = time.perf_counter()
    with open(log, "w") as out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            out.write(line)
            stage = markers.get(line.strip())
            if stage:
                now = time.perf_counter() - start
                stages[stage], last = now - last, now
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    stages["preprocess"] = wall - last
    return {"wall": wall, "stages": stages, "command": " ".join(["nnUNetv2_plan_and_preprocess"] + cmd[1:])}


def read_nnunet_outputs(python: str | Path, preprocessed: Path, out_dir: Path, log: Path) -> None:
    """nnU-Net's preprocessed images under `preprocessed` as {case}.npy in `out_dir`, read in its
    virtualenv (`python`)."""
    from unet.bench.nnunet_worker import command

    cmd = command(python, "read", str(preprocessed), str(out_dir))
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
