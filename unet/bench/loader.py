"""Loader benchmark: augmented training patches per second, ours against nnU-Net v2's, per core.

Both pipelines read the same synthetic preprocessed cases (default 8 cases of about 160x180x150,
4 channels, float32, three nested foreground labels) and make 128^3 patches in batches of 2, a
third of them centred on foreground, with nnU-Net v2's 3d_fullres training augmentation:

- ours: `unet.data.pipeline.training_dataset` over TFRecord shards (cases decoded once and
  cached in memory), tf.data with a private pool of `cores` threads, one thread per patch.
- nnU-Net: run in its own virtualenv (`unet.bench.reference_env`), this same module with
  `--reference-worker`: the cases saved as its preprocessor does (`nnUNetDatasetBlosc2`: .b2nd
  image and seg, .pkl properties with class locations from its own `_sample_foreground_locations`),
  read by `nnUNetDataLoader` with the initial (enlarged) patch size and the transforms of
  `nnUNetTrainer.get_training_transforms` (rotation +-30 degrees on all axes, mirror axes
  (0, 1, 2), no dummy-2D, no deep supervision scales: our loader does not downsample targets
  either), driven by `NonDetMultiThreadedAugmenter` with `cores` worker processes, as
  nnUNetTrainer.get_dataloaders does.

Each side warms up (tracing, cache filling, worker start) before `seconds` of timed batches.
Per core is patches per CPU-second of the processes doing the work (ours: this process's threads;
nnU-Net: its main process and workers, from /proc), which stays meaningful when other jobs share
the machine; patches/s and patches/s / `cores` (wall clock) are reported too. The 16-core figure
is 16 x our per-core rate: linear scaling (independent patches, no shared state), which a 2-core
machine cannot confirm.

    python -m unet.bench.loader --cores 2 --seconds 60 --out loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LABELS = 3


def synthetic_case(shape, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A brain-tumour-like case: noisy channels, nested ellipsoids of labels 1..3 (uint8 seg)."""
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = [rng.uniform(0.3, 0.7) * n for n in shape]
    radius = [rng.uniform(0.08, 0.15) * n for n in shape]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius))
    seg = np.zeros(shape, np.uint8)
    for label, extent in zip(range(1, LABELS + 1), (1.0, 0.5, 0.2)):
        seg[dist <= extent] = label
    image = rng.standard_normal((*shape, channels), dtype=np.float32)
    image += seg[..., None].astype(np.float32) * rng.uniform(0.5, 1.5, channels).astype(np.float32)
    return image, seg


def make_cases(folder: Path, n_cases: int, shape, channels: int) -> list[str]:
    """Write `{case}.npy`, `{case}_seg.npy`, `{case}_fg.npy` as the preprocess stage does."""
    from unet.data.shards import locations_from_seg
    from unet.io.atomic import save_npy

    ids = []
    for i in range(n_cases):
        cid = f"case_{i:03d}"
        jitter = np.random.default_rng(1000 + i).integers(-10, 11, 3)
        image, seg = synthetic_case(tuple(int(s + j) for s, j in zip(shape, jitter)), channels, seed=i)
        save_npy(folder / f"{cid}.npy", image)
        save_npy(folder / f"{cid}_seg.npy", seg)
        save_npy(folder / f"{cid}_fg.npy", locations_from_seg(seg, seed=i))
        ids.append(cid)
    return ids


def cpu_seconds(pids) -> float:
    """User + system CPU time of the processes `pids` so far, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _timed(next_batch, patches_per_batch: int, warmup: int, seconds: float, cpu) -> dict:
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


def ours(shard_dir: Path, ids: list[str], patch, batch: int, cores: int, seconds: float,
         warmup: int, elastic: bool = False) -> dict:
    from unet.data.pipeline import training_dataset

    dataset = training_dataset(shard_dir, ids, patch, batch, oversampling=0.33, seed=0, augment=True,
                               elastic=elastic, threads=cores)
    batches = iter(dataset)
    result = _timed(lambda: next(batches), batch, warmup, seconds, lambda: cpu_seconds([os.getpid()]))
    return {"pipeline": "unet (tf.data)", "elastic": elastic, **result}


def reference(preprocessed: Path, ids: list[str], patch, batch: int, cores: int, seconds: float,
              warmup: int, work: Path) -> dict:
    """Run nnU-Net v2's loader in its virtualenv (this module, --reference-worker); its result."""
    from unet.bench.reference_env import nnunet_python

    python = nnunet_python()
    args = {"preprocessed": str(preprocessed), "ids": ids, "patch": list(patch), "batch": batch,
            "cores": cores, "seconds": seconds, "warmup": warmup, "work": str(work)}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           **{k: str(work / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    done = subprocess.run([str(python), "-m", "unet.bench.loader", "--reference-worker", json.dumps(args)],
                          env=env, cwd=str(REPO), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nnU-Net loader benchmark failed ({python}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference_worker(args: dict) -> dict:
    """Inside the nnU-Net virtualenv: save the cases as its preprocessor does, then time its loader."""
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
    labels = list(range(1, LABELS + 1))
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
        result = _timed(lambda: next(augmenter), args["batch"], args["warmup"], args["seconds"],
                        lambda: cpu_seconds(pids))
    finally:
        augmenter._finish()
    return {"pipeline": "nnU-Net v2 (nnUNetDataLoader + NonDetMultiThreadedAugmenter)",
            "initial_patch_size": [int(i) for i in initial], "deep_supervision_scales": None,
            "data_format": "nnUNetDatasetBlosc2 (.b2nd)", **result}


def run(cores: int, seconds: float, out: str | Path | None = None, n_cases: int = 8,
        shape=(160, 180, 150), channels: int = 4, patch=(128, 128, 128), batch: int = 2,
        warmup: int = 4, with_reference: bool = True, work_dir: str | Path | None = None) -> dict:
    from unet.data.shards import write_shards
    from unet.io.atomic import write_json

    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="loader-bench-") as tmp:
        work = Path(tmp)
        ids = make_cases(work / "preprocessed", n_cases, shape, channels)
        write_shards(work / "preprocessed", ids, work / "shards")
        ours_result = ours(work / "shards", ids, patch, batch, cores, seconds, warmup)
        ref = reference(work / "preprocessed", ids, patch, batch, cores, seconds, warmup, work) \
            if with_reference else None
    result = {
        "cores": cores, "machine_cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "platform": platform.platform(), "cases": n_cases, "case_shape": list(shape), "channels": channels,
        "patch_size": list(patch), "batch_size": batch, "oversampling": 0.33,
        "ours": _per_core(ours_result, cores),
        "goal_16_cores": 60.0,
    }
    # Per core = per CPU-second of the processes doing the work: unlike patches/s / cores it
    # holds on a machine that other jobs share. 16 cores: that rate times 16, linear scaling.
    result["ours_16_cores_extrapolated"] = 16 * result["ours"]["per_core"]
    if ref is not None:
        result["nnunet"] = _per_core(ref, cores)
        result["ratio_per_core"] = result["ours"]["per_core"] / result["nnunet"]["per_core"]
        result["ratio_wall"] = ours_result["patches_per_s"] / ref["patches_per_s"]
        result["goal_ratio"] = 2.0
    if out is not None:
        write_json(out, result)
    return result


def _per_core(timing: dict, cores: int) -> dict:
    per_cpu = timing.get("patches_per_cpu_s")
    return {**timing, "patches_per_s_per_core": timing["patches_per_s"] / cores,
            "per_core": per_cpu if per_cpu else timing["patches_per_s"] / cores}


def format_result(result: dict) -> str:
    lines = [f"loader benchmark: {result['cores']} cores, patch {'x'.join(map(str, result['patch_size']))}"
             f"x{result['channels']}, batch {result['batch_size']}"]
    for key in ("ours", "nnunet"):
        if key in result:
            r = result[key]
            lines.append(f"  {r['pipeline']:<62} {r['patches_per_s']:6.2f} patches/s "
                         f"({r['patches_per_s_per_core']:.2f} per core), {r['per_core']:.2f} per CPU-second")
    if "ratio_per_core" in result:
        lines.append(f"  ours / nnU-Net per core (per CPU-second): {result['ratio_per_core']:.2f}, wall: "
                     f"{result['ratio_wall']:.2f} (goal >= {result['goal_ratio']})")
    lines.append(f"  ours from 16 cores (16 x per CPU-second): {result['ours_16_cores_extrapolated']:.1f} "
                 f"patches/s (goal >= {result['goal_16_cores']:.0f}); load average {result['load_average'][0]:.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default=None, help="JSON file for the result")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 180, 150))
    parser.add_argument("--patch", type=int, nargs=3, default=(128, 128, 128))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches first")
    parser.add_argument("--no-reference", action="store_true", help="skip nnU-Net")
    parser.add_argument("--reference-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_worker:
        print(json.dumps(_reference_worker(json.loads(args.reference_worker))), flush=True)
        return
    from unet.runtime import configure_tensorflow

    configure_tensorflow(args.cores)
    result = run(args.cores, args.seconds, args.out, args.cases, tuple(args.shape), 4, tuple(args.patch),
                 args.batch, args.warmup, with_reference=not args.no_reference)
    print(format_result(result))
    if args.out:
        print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
