"""Loader benchmark: augmented training patches per second, ours against nnU-Net v2's, per core.

Both pipelines read the same synthetic preprocessed cases (default 8 cases of about 160x180x150,
4 channels, float32, three nested foreground labels) and make 128^3 patches in batches of 2, a
third of them centred on foreground, with nnU-Net v2's 3d_fullres training augmentation:

- ours: `unet.data.pipeline.training_dataset` over TFRecord shards (cases decoded once and
  cached in memory), tf.data with a private pool of `cores` threads, one thread per patch.
- nnU-Net: run in its own virtualenv (`make bench-env`) by `unet.bench.nnunet_worker`: the cases
  saved as its preprocessor does (`nnUNetDatasetBlosc2`: .b2nd image and seg, .pkl properties
  with class locations from its own `_sample_foreground_locations`), read by `nnUNetDataLoader`
  with the initial (enlarged) patch size and the transforms of
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

    python -m unet.bench.loader --nnunet-venv .bench/nnunet-venv --cores 2 --seconds 60 --out loader.json
    python -m unet.bench.loader --no-reference --cores 2    # ours only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from unet.bench.nnunet_worker import cpu_seconds, timed
from unet.bench.synthetic import NESTED_LABELS


def ours(shard_dir: Path, ids: list[str], patch, batch: int, cores: int, seconds: float,
         warmup: int, elastic: bool = False, patches_per_case: int = 1) -> dict:
    from unet.data.pipeline import training_dataset

    dataset = training_dataset(shard_dir, ids, patch, batch, oversampling=0.33, seed=0, augment=True,
                               elastic=elastic, threads=cores, patches_per_case=patches_per_case)
    batches = iter(dataset)
    result = timed(lambda: next(batches), batch, warmup, seconds, lambda: cpu_seconds([os.getpid()]))
    return {"pipeline": "unet (tf.data)", "elastic": elastic, **result}


def reference(python: Path, preprocessed: Path, ids: list[str], patch, batch: int, cores: int,
              seconds: float, warmup: int, work: Path) -> dict:
    """Run nnU-Net v2's loader in its virtualenv (`python`, `unet.bench.nnunet_worker`); its result."""
    from unet.bench.nnunet_worker import command

    args = {"preprocessed": str(preprocessed), "ids": ids, "labels": list(range(1, NESTED_LABELS + 1)),
            "patch": list(patch), "batch": batch, "cores": cores, "seconds": seconds, "warmup": warmup,
            "work": str(work)}
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           **{k: str(work / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    done = subprocess.run(command(python, "loader", json.dumps(args)), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nnU-Net loader benchmark failed ({python}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(cores: int, seconds: float, out: str | Path | None = None, n_cases: int = 8,
        shape=(160, 180, 150), channels: int = 4, patch=(128, 128, 128), batch: int = 2,
        warmup: int = 4, with_reference: bool = True, work_dir: str | Path | None = None,
        nnunet_venv: str | Path | None = None, patches_per_case: int = 1) -> dict:
    """Both loaders on the same generated cases (ours only without `with_reference`); the result,
    written to `out` (JSON) if given. `nnunet_venv`: nnU-Net v2's virtualenv (`make bench-env`)."""
    from unet.bench.reference_env import nnunet_python
    from unet.bench.synthetic import write_preprocessed_cases
    from unet.data.shards import write_shards
    from unet.io.atomic import write_json

    python = nnunet_python(nnunet_venv) if with_reference else None  # before any work
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="loader-bench-") as tmp:
        work = Path(tmp)
        ids = write_preprocessed_cases(work / "preprocessed", n_cases, shape, channels)
        write_shards(work / "preprocessed", ids, work / "shards")
        ours_result = ours(work / "shards", ids, patch, batch, cores, seconds, warmup,
                           patches_per_case=patches_per_case)
        ref = reference(python, work / "preprocessed", ids, patch, batch, cores, seconds, warmup, work) \
            if with_reference else None
    result = {
        "cores": cores, "machine_cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "platform": platform.platform(), "cases": n_cases, "case_shape": list(shape), "channels": channels,
        "patch_size": list(patch), "batch_size": batch, "oversampling": 0.33, "patches_per_case": patches_per_case,
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
             f"x{result['channels']}, batch {result['batch_size']}, ours {result['patches_per_case']} patches per case"]
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
    parser = argparse.ArgumentParser(prog="python -m unet.bench.loader", description=__doc__.split("\n")[0])
    parser.add_argument("--nnunet-venv", help="folder of nnU-Net v2's virtualenv (required unless --no-reference; "
                                              "`make bench-env` builds .bench/nnunet-venv)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default=None, help="JSON file for the result")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 180, 150))
    parser.add_argument("--patch", type=int, nargs=3, default=(128, 128, 128))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches first")
    parser.add_argument("--no-reference", action="store_true", help="skip nnU-Net")
    parser.add_argument("--patches-per-case", type=int, default=1,
                        help="ours: consecutive patches cut from one case (train.patches_per_case)")
    args = parser.parse_args(argv)
    if not args.no_reference:
        from unet.bench.reference_env import nnunet_python

        try:
            nnunet_python(args.nnunet_venv)
        except (ValueError, FileNotFoundError) as error:
            parser.error(f"{error}; or measure ours only with --no-reference")
    from unet.runtime import configure_tensorflow

    configure_tensorflow(args.cores)
    result = run(args.cores, args.seconds, args.out, args.cases, tuple(args.shape), 4, tuple(args.patch),
                 args.batch, args.warmup, with_reference=not args.no_reference, nnunet_venv=args.nnunet_venv,
                 patches_per_case=args.patches_per_case)
    print(format_result(result))
    if args.out:
        print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
