"""Accuracy benchmark: our workflow against nnU-Net v2 trained for the same steps, with the same
network sizes, on the same split of a generated dataset made to be hard, both scored by our
evaluation on the raw grid.

- the data (`unet.bench.hard_cases`): thick slices (0.7 x 0.7 x 4 mm, the coarse axis last on
  disk), two channels, an organ, a thin winding vessel and small lesions (strong class imbalance),
  distractors that only both channels tell apart;
- ours: the workflow itself (Snakemake, the given Snakefile, a config in the work folder with the
  plan overrides, epochs and steps, and the configurations listed), up to fold 0's validation
  predictions of each configuration;
- nnU-Net (`unet.bench.nnunet_train`): its own fingerprint and plans, plus for each configuration
  one with our plan's spacing, patch, batch, filters, strides and kernels (3d_fullres as
  `3d_bench`, 2d as `2d_bench`, each copied from its own configuration of that kind); our
  splits.json as its splits_final.json; its default trainer limited to our epochs x steps;
  `nnUNetv2_train -device cpu`, which also predicts the fold's validation cases on the raw grid;
- scoring and the report (`unet.bench.accuracy_report`): `unet.evaluation.evaluate.evaluate_folder`
  on both prediction folders.

`--configurations 3d_fullres 2d` trains both configurations, each on both sides (the default is
3d_fullres alone); each configuration's two sides run back to back.

Goal: per label, our mean Dice >= nnU-Net's - 0.01, with less time in training steps (the median
epoch's: the two sides run one after the other, and on a shared machine the median is the figure
least moved by another job's burst).

    python -m unet.bench.accuracy --nnunet-venv .bench/nnunet-venv --snakefile Snakefile --out accuracy.json
    python -m unet.bench.accuracy --nnunet-venv .bench/nnunet-venv --snakefile Snakefile --configurations 3d_fullres 2d

Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

FULLRES = "3d_fullres"  # unet.preprocessing.plan.FULLRES, not imported: the standard library only here
DATASET_ID = 556
DEFAULTS = {"cases": 20, "epochs": 10, "steps": 50, "patch_size": [64, 64, 16], "batch_size": 2, "filters": 16}
# The 2d network (config plan.2d), when trained: nnU-Net's planned patch for these cases (the whole
# slice, 96 x 96), the 3d_fullres benchmark's width (filters 16, planned 32), and a batch that puts
# as many voxels through a step as the 3d_fullres one (14 x 96 x 96 ~ 2 x 64 x 64 x 16; planned 22).
DEFAULTS_2D = {"patch_size": [96, 96], "batch_size": 14, "filters": 16}
CONFIGURATIONS = (FULLRES, "2d")  # those the benchmark can train, each against nnU-Net's of that name
# Mirroring at prediction (ours predict.tta, nnU-Net's default) is off on both sides by default:
# nnU-Net predicts a case 8x slower with it, a minute per case on a 2-core CPU.
VALIDATION_PATCHES = 32  # our training loop's validation patches per epoch (TrainSettings)


# --- our side ---------------------------------------------------------------------------------

def workflow_config(work: Path, task: str, fold: int, nfolds: int, plan: dict, train: dict, tta: bool,
                    configurations: Sequence[str] = (FULLRES,)) -> dict:
    """The config of our run: the generated task under work/data, results under work/results, the
    `configurations` listed (never `auto`, which would also train what the dataset plans besides)."""
    return {"task": task, "data_dir": str(work / "data"), "results": str(work / "results"),
            "nfolds": nfolds, "folds": [fold], "split_seed": 0, "configurations": list(configurations),
            "plan": plan, "train": train, "predict": {"tta": bool(tta)}, "evaluate": {"regions": {}}}


def our_outputs(config: dict, configuration: str = FULLRES) -> dict[str, Path]:
    """What our workflow writes for fold `folds[0]` of `configuration` and the benchmark reads, in
    the layout of rules/common.smk (docs/outputs.md): the validation predictions, the training log
    (the two targets), plans.json, splits.json and the train and predict jobs' benchmark files."""
    fold = config["folds"][0]
    results = Path(config["results"]) / config["task"]
    folder = results / configuration
    return {"predictions": folder / "predictions" / f"fold_{fold}",
            "training_log": folder / f"fold_{fold}" / "training_log.jsonl",
            "plans": results / "plans.json", "splits": results / "splits.json",
            **{f"{rule}_tsv": results / "benchmarks" / f"{rule}_{configuration}_fold_{fold}.tsv"
               for rule in ("train", "predict")}}


def run_ours(snakefile: str | os.PathLike, work: Path, config: dict, cores: int,
             configuration: str = FULLRES) -> dict:
    """Our workflow up to fold `folds[0]`'s validation predictions of `configuration` (one of
    config `configurations`), in a fresh Snakemake process; its wall time and what it wrote (the
    configuration's plan, splits, training log, rule times)."""
    import yaml

    from unet.preprocessing.plan import Plan

    paths = our_outputs(config, configuration)
    config_path = work / "config.yaml"  # the Snakefile's `configfile:` is read from the work folder
    config_path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(Path(snakefile).resolve()), "--directory", str(work),
           "--configfile", str(config_path), "--cores", str(cores), str(paths["predictions"]),
           str(paths["training_log"])]
    log = work / f"ours_{configuration}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{log.read_text()[-4000:]}")
    rows = [json.loads(line) for line in paths["training_log"].read_text().splitlines() if line.strip()]
    plans = json.loads(paths["plans"].read_text())
    return {"wall_s": wall, "results": paths["plans"].parent, "epochs": rows, "configuration": configuration,
            "plan": json.loads(json.dumps(Plan.from_plans(plans, configuration).to_json())),  # lists, as read
            "splits": json.loads(paths["splits"].read_text()),
            "rule_times": {rule: _rule_times(paths[f"{rule}_tsv"]) for rule in ("train", "predict")},
            "predictions": str(paths["predictions"])}


def _rule_times(tsv: Path) -> dict:
    """The wall and CPU time (s) Snakemake's `benchmark:` file records for a job."""
    if not tsv.exists():
        return {"wall_s": None, "cpu_s": None}
    header, values = tsv.read_text().splitlines()[:2]
    row = dict(zip(header.split("\t"), values.split("\t")))
    return {"wall_s": float(row["s"]), "cpu_s": float(row["cpu_time"])}


# --- the whole benchmark ----------------------------------------------------------------------

def benchmark_plan(plan: dict | None, configurations: Sequence[str], plan_2d: dict | None = None) -> dict:
    """Our config `plan:` for the run: `plan` (default DEFAULTS' 3d_fullres sizes) and, when 2d is
    trained, its `2d:` section (`plan_2d`, default DEFAULTS_2D)."""
    plan = dict(plan or {k: DEFAULTS[k] for k in ("patch_size", "batch_size", "filters")})
    if "2d" in configurations:
        plan["2d"] = dict(plan_2d or plan.get("2d") or DEFAULTS_2D)
    return plan


def run_benchmark(nnunet_venv, snakefile, n_cases: int = DEFAULTS["cases"], epochs: int = DEFAULTS["epochs"],
                  steps: int = DEFAULTS["steps"], plan: dict | None = None, train: dict | None = None,
                  tta: bool = False, cores: int = 2, seed: int = 0, fold: int = 0, nfolds: int = 5,
                  work_dir=None, out=None, configurations: Sequence[str] = (FULLRES,),
                  plan_2d: dict | None = None) -> dict:
    """Generate, then for each of `configurations` in turn run ours and nnU-Net's, score both; write
    the report to `out` (JSON) if given. `plan`: our plan overrides (config `plan:`, sizing
    3d_fullres); `plan_2d`: its `2d:` section; `train`: further config `train:` settings.

    Each configuration's two sides run back to back (ours, then nnU-Net's), so that they share the
    machine's load as closely as a shared machine allows."""
    from unet.bench.accuracy_report import build_report, combine_reports, score
    from unet.bench.hard_cases import NAME, generate_hard_dataset
    from unet.bench.nnunet_preprocess import to_nnunet_raw
    from unet.bench.nnunet_train import plan_nnunet, run_nnunet_configuration
    from unet.bench.reference_env import nnunet_python
    from unet.io.atomic import write_json
    from unet.runtime import machine_info

    python = nnunet_python(nnunet_venv)  # before any work: a missing virtualenv stops here
    configurations = list(dict.fromkeys(configurations))
    unknown = sorted(set(configurations) - set(CONFIGURATIONS))
    if unknown:
        raise ValueError(f"configurations {unknown}: the benchmark trains {list(CONFIGURATIONS)}")
    plan = benchmark_plan(plan, configurations, plan_2d)
    train = {**(train or {}), "epochs": int(epochs), "steps_per_epoch": int(steps)}
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        work = (Path(work_dir) if work_dir else Path(tmp)).resolve()  # the nested run has its own working folder
        work.mkdir(parents=True, exist_ok=True)
        for stale in ("results", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", ".snakemake"):
            shutil.rmtree(work / stale, ignore_errors=True)
        data = work / "data" / NAME
        start = time.perf_counter()
        generate_hard_dataset(data, n_cases, seed, workers=cores)
        raw = to_nnunet_raw(data, work / "nnUNet_raw", DATASET_ID, workers=cores)
        print(f"generated {n_cases} cases in {time.perf_counter() - start:.1f} s under {work}", flush=True)

        config = workflow_config(work, NAME, fold, nfolds, plan, train, tta, configurations)
        planned, reports = None, {}
        for configuration in configurations:
            load_before, date = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            ours = run_ours(snakefile, work, config, cores, configuration)
            print(f"ours, {configuration}: {ours['wall_s']:.1f} s", flush=True)
            load_between = list(os.getloadavg())
            splits, val_ids = ours["splits"], ours["splits"][fold]["val"]
            if planned is None:
                planned = plan_nnunet(python, work, DATASET_ID, raw.name, splits,
                                      sorted(splits[fold]["train"] + val_ids), cores)
            val_steps = math.ceil(VALIDATION_PATCHES / int(ours["plan"]["batch_size"]))
            theirs = run_nnunet_configuration(python, work, DATASET_ID, raw.name, planned, ours["plan"], fold,
                                              epochs, steps, val_steps, tta, cores)
            print(f"nnU-Net, {configuration}: {sum(theirs['wall_s'].values()):.1f} s", flush=True)
            settings = {"configuration": configuration, "n_cases": n_cases, "seed": seed, "fold": fold,
                        "nfolds": nfolds, "epochs": epochs, "steps_per_epoch": steps, "tta": tta, "cores": cores,
                        "plan_overrides": plan, "train": train, "validation_cases": val_ids, "date": date,
                        "load_average_before": load_before, "load_average_between": load_between,
                        "load_average_after": list(os.getloadavg())}
            reports[configuration] = build_report(ours, theirs, score(ours["predictions"], data, val_ids, fold),
                                                  score(theirs["predictions"], data, val_ids, fold), settings,
                                                  machine_info(cores))
    report = reports[configurations[0]] if len(reports) == 1 else combine_reports(reports)
    if out is not None:
        write_json(out, report)
    return report


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The generated data, the schedule, the network sizes and where to work: shared with the
    recipe ablation (`unet.bench.ablation`)."""
    parser.add_argument("--cases", type=int, default=DEFAULTS["cases"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="training steps per epoch")
    parser.add_argument("--patch", type=int, nargs=3, default=DEFAULTS["patch_size"])
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--filters", type=int, default=DEFAULTS["filters"], help="first level's filters")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated cases")
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnunet-venv", help="folder of nnU-Net v2's virtualenv (required; `make bench-env` "
                                              "builds .bench/nnunet-venv)")
    parser.add_argument("--snakefile", required=True, help="the workflow's Snakefile (ours runs through it)")
    add_dataset_arguments(parser)
    parser.add_argument("--tta", action="store_true", help="predict with mirroring (both sides)")
    parser.add_argument("--configurations", nargs="+", choices=CONFIGURATIONS, default=[FULLRES],
                        help="configurations to train, each on both sides, in this order (default: 3d_fullres)")
    parser.add_argument("--patch-2d", type=int, nargs=2, default=DEFAULTS_2D["patch_size"],
                        help="the 2d network's patch (in-plane), with --configurations ... 2d")
    parser.add_argument("--batch-2d", type=int, default=DEFAULTS_2D["batch_size"])
    parser.add_argument("--filters-2d", type=int, default=DEFAULTS_2D["filters"])
    args = parser.parse_args(argv)
    from unet.bench.accuracy_report import format_report
    from unet.bench.reference_env import nnunet_python

    try:
        nnunet_python(args.nnunet_venv)  # a missing virtualenv stops here, before any work
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    plan = {"patch_size": args.patch, "batch_size": args.batch, "filters": args.filters}
    plan_2d = {"patch_size": args.patch_2d, "batch_size": args.batch_2d, "filters": args.filters_2d}
    report = run_benchmark(args.nnunet_venv, Path(args.snakefile).resolve(), args.cases, args.epochs, args.steps,
                           plan, tta=args.tta, cores=args.cores, seed=args.seed, work_dir=args.keep,
                           out=args.out, configurations=args.configurations, plan_2d=plan_2d)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
