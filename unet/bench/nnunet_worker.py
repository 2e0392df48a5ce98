"""nnU-Net v2's side of the benchmarks, run inside its own virtualenv as a script:

    NNUNET_VENV/bin/python -I nnunet_worker.py read PREPROCESSED OUT
    NNUNET_VENV/bin/python -I nnunet_worker.py loader JSON
    NNUNET_VENV/bin/python -I nnunet_worker.py train TRAINER_FILE NNUNETV2_TRAIN_ARGS...

That environment has nnU-Net, torch and blosc2 but not this package, so the module imports only
numpy and the standard library at module level, and nothing from `unet` (`-I` keeps the caller's
PYTHONPATH and this folder off `sys.path`). `cpu_seconds` and `timed` are shared with our side
of the loader benchmark, which imports this module as usual.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def command(python: str | os.PathLike, *args: str) -> list[str]:
    """The command line that runs this script with `python` (an nnU-Net virtualenv's)."""
    return [str(python), "-I", str(Path(__file__).resolve()), *args]


def cpu_seconds(pids) -> float:
    """User + system CPU time of the processes `pids` so far, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def timed(next_batch, patches_per_batch: int, warmup: int, seconds: float, cpu) -> dict:
    """Patches/s over `seconds` after `warmup` batches, and patches per CPU-second (`cpu()` is the
    CPU time of every process doing the work): the per-core rate even on a busy machine."""
    start = time.perf_counter()
    for _ in range(warmup):
        next_batch()
    warmup_s = time.perf_counter() - start
    batches, start, cpu_start = 0, time.perf_counter(), cpu()
    while time.perf_counter() - start < seconds:
        next_batch()
        batches += 1
    elapsed, used = time.perf_counter() - start, cpu() - cpu_start
    patches = batches * patches_per_batch
    return {"patches": patches, "seconds": elapsed, "cpu_seconds": used, "warmup_s": warmup_s,
            "patches_per_s": patches / elapsed, "patches_per_cpu_s": patches / used if used else None}


def read_preprocessed(preprocessed: str | Path, out_dir: str | Path) -> None:
    """Each case's .b2nd image written by nnU-Net's preprocessing, (C, ...) float32, saved as
    {case}.npy in `out_dir` for our side to compare (our environment has no blosc2)."""
    import blosc2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(preprocessed).glob("*.b2nd")):
        if not path.name.endswith("_seg.b2nd"):
            np.save(out_dir / f"{path.name[:-len('.b2nd')]}.npy", blosc2.open(urlpath=str(path), mode="r")[:],
                    allow_pickle=False)


def time_loader(args: dict) -> dict:
    """Save the cases as nnU-Net's preprocessor does, then time its loader with its training
    transforms (see unet.bench.loader)."""
    import pickle

    import torch
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    torch.set_num_threads(1)
    source, folder = Path(args["preprocessed"]), Path(args["work"]) / "nnunet_3d_fullres"
    folder.mkdir(parents=True, exist_ok=True)
    patch = tuple(args["patch"])
    labels = list(args["labels"])
    for cid in args["ids"]:
        image = np.moveaxis(np.load(source / f"{cid}.npy", allow_pickle=False), -1, 0)  # (C, X, Y, Z)
        seg = np.load(source / f"{cid}_seg.npy", allow_pickle=False)[None].astype(np.int8)
        blocks, chunks = comp_blosc2_params(image.shape, patch, image.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
        properties = {"class_locations": DefaultPreprocessor._sample_foreground_locations(seg, labels)}
        nnUNetDatasetBlosc2.save_case(np.ascontiguousarray(image), seg, properties, str(folder / cid),
                                      chunks=chunks, blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    with open(folder / f"{args['ids'][0]}.pkl", "rb") as f:
        assert "class_locations" in pickle.load(f)

    rotation = (-30.0 / 360 * 2 * np.pi, 30.0 / 360 * 2 * np.pi)  # 3d_fullres, isotropic patch
    mirror_axes = (0, 1, 2)
    initial = get_patch_size(patch, rotation, rotation, rotation, (0.85, 1.25))
    transforms = nnUNetTrainer.get_training_transforms(patch, rotation, None, mirror_axes, False)
    label_manager = LabelManager({"background": 0, **{f"label{i}": i for i in labels}}, None)
    loader = nnUNetDataLoader(nnUNetDatasetBlosc2(str(folder)), args["batch"], initial, patch, label_manager,
                              oversample_foreground_percent=0.33, transforms=transforms)
    cores = int(args["cores"])
    augmenter = NonDetMultiThreadedAugmenter(loader, None, num_processes=cores, num_cached=max(6, cores // 2),
                                             seeds=None, pin_memory=False, wait_time=0.002)
    try:
        next(augmenter)  # starts the workers
        pids = [os.getpid()] + [p.pid for p in augmenter._processes]
        result = timed(lambda: next(augmenter), args["batch"], args["warmup"], args["seconds"],
                       lambda: cpu_seconds(pids))
    finally:
        augmenter._finish()
    return {"pipeline": "nnU-Net v2 (nnUNetDataLoader + NonDetMultiThreadedAugmenter)",
            "initial_patch_size": [int(i) for i in initial], "deep_supervision_scales": None,
            "data_format": "nnUNetDatasetBlosc2 (.b2nd)", **result}


def train(trainer_file: str | Path, argv: list[str]) -> None:
    """`nnUNetv2_train` with `argv` (its own entry point), the trainer classes of the module
    `trainer_file` found by name first. nnU-Net's own lookup imports every trainer module it ships
    until one has the name, and one that fails to import (its Primus trainers need torchvision's
    compiled ops) would stop the run before it reached ours."""
    import importlib.util

    import nnunetv2.run.run_training as run_training

    spec = importlib.util.spec_from_file_location(Path(trainer_file).stem, str(trainer_file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    find = run_training.recursive_find_trainer_class_by_name
    run_training.recursive_find_trainer_class_by_name = lambda name: getattr(module, name, None) or find(name)
    sys.argv = ["nnUNetv2_train", *argv]
    run_training.run_training_entry()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "read":
        read_preprocessed(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "loader":
        print(json.dumps(time_loader(json.loads(argv[1]))), flush=True)
    elif len(argv) >= 2 and argv[0] == "train":
        train(argv[1], argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
