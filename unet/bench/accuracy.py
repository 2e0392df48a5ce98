"""Accuracy benchmark: our workflow against nnU-Net v2 trained for the same steps, with the same
network sizes, on the same split of a generated dataset made to be hard, both scored by our
evaluation on the raw grid.

- the data (`unet.bench.hard_cases`): thick slices (0.7 x 0.7 x 4 mm, the coarse axis last on
  disk), two channels, an organ, a thin winding vessel and small lesions (strong class imbalance),
  distractors that only both channels tell apart;
- ours: the workflow itself (Snakemake, the given Snakefile, a config in the work folder with the
  plan overrides, epochs and steps), up to fold 0's validation predictions;
- nnU-Net (`unet.bench.nnunet_train`): its own fingerprint and plans, plus a configuration with
  our plan's spacing, patch, batch, filters, strides and kernels; our splits.json as its
  splits_final.json; its default trainer limited to our epochs x steps; `nnUNetv2_train -device
  cpu`, which also predicts the fold's validation cases on the raw grid;
- scoring: `unet.evaluation.evaluate.evaluate_folder` on both prediction folders.

Goal: per label, our mean Dice >= nnU-Net's - 0.01, with less time in training steps (the median
epoch's: the two sides run one after the other, and on a shared machine the median is the figure
least moved by another job's burst).

    python -m unet.bench.accuracy --nnunet-venv .bench/nnunet-venv --snakefile Snakefile --out accuracy.json

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

DICE_MARGIN = 0.01
DATASET_ID = 556
DEFAULTS = {"cases": 20, "epochs": 10, "steps": 50, "patch_size": [64, 64, 16], "batch_size": 2, "filters": 16}
# Mirroring at prediction (ours predict.tta, nnU-Net's default) is off on both sides by default:
# nnU-Net predicts a case 8x slower with it, a minute per case on a 2-core CPU.
VALIDATION_PATCHES = 32  # our training loop's validation patches per epoch (TrainSettings)


# --- our side ---------------------------------------------------------------------------------

def workflow_config(work: Path, task: str, fold: int, nfolds: int, plan: dict, train: dict, tta: bool) -> dict:
    """The config of our run: the generated task under work/data, results under work/results."""
    return {"task": task, "data_dir": str(work / "data"), "results": str(work / "results"),
            "nfolds": nfolds, "folds": [fold], "split_seed": 0, "plan": plan, "train": train,
            "predict": {"tta": bool(tta)}, "evaluate": {"regions": {}}}


def run_ours(snakefile: str | os.PathLike, work: Path, config: dict, cores: int) -> dict:
    """Our workflow up to fold `folds[0]`'s validation predictions, in a fresh Snakemake process;
    its wall time and what it wrote (plans, splits, training log, rule times)."""
    import yaml

    fold = config["folds"][0]
    results = Path(config["results"]) / config["task"]
    config_path = work / "config.yaml"  # the Snakefile's `configfile:` is read from the work folder
    config_path.write_text(yaml.safe_dump(config))
    targets = [str(results / "predictions" / f"fold_{fold}"), str(results / f"fold_{fold}" / "training_log.jsonl")]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(Path(snakefile).resolve()), "--directory", str(work),
           "--configfile", str(config_path), "--cores", str(cores), *targets]
    start = time.perf_counter()
    with open(work / "ours.log", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {work / 'ours.log'}:\n"
                           f"{(work / 'ours.log').read_text()[-4000:]}")
    rows = [json.loads(line) for line in (results / f"fold_{fold}" / "training_log.jsonl").read_text().splitlines()
            if line.strip()]
    return {"wall_s": wall, "results": results, "epochs": rows,
            "plan": json.loads((results / "plans.json").read_text()),
            "splits": json.loads((results / "splits.json").read_text()),
            "rule_times": {rule: _rule_times(results / "benchmarks" / f"{rule}_fold_{fold}.tsv")
                           for rule in ("train", "predict")},
            "predictions": str(results / "predictions" / f"fold_{fold}")}


def _rule_times(tsv: Path) -> dict:
    """The wall and CPU time (s) Snakemake's `benchmark:` file records for a job."""
    if not tsv.exists():
        return {"wall_s": None, "cpu_s": None}
    header, values = tsv.read_text().splitlines()[:2]
    row = dict(zip(header.split("\t"), values.split("\t")))
    return {"wall_s": float(row["s"]), "cpu_s": float(row["cpu_time"])}


# --- scoring ----------------------------------------------------------------------------------

def score(predictions: str | os.PathLike, data: Path, val_ids: list[str], fold: int) -> dict:
    """Per foreground label: mean Dice over the validation cases (NaN where a structure is absent
    from both left out, as nnU-Net), pooled Dice over all their voxels and mean HD95 (mm)."""
    import numpy as np

    from unet.evaluation.evaluate import evaluate_folder
    from unet.io.msd import load_dataset

    dataset = load_dataset(data)
    table = evaluate_folder(predictions, {c.id: c.label for c in dataset.training}, dataset.labels, (),
                            fold=fold, expected=val_ids)
    out = {}
    for name, rows in table.groupby("label", sort=False):
        tp, fp, fn = (int(rows[c].sum()) for c in ("tp", "fp", "fn"))
        out[name] = {"dice": float(np.nanmean(rows["dice"])) if rows["dice"].notna().any() else None,
                     "pooled_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
                     "hd95_mm": float(np.nanmean(rows["hd95"])) if rows["hd95"].notna().any() else None,
                     "cases": {r.case: (None if math.isnan(r.dice) else float(r.dice)) for r in rows.itertuples()}}
    return out


# --- the whole benchmark ----------------------------------------------------------------------

def run_benchmark(nnunet_venv, snakefile, n_cases: int = DEFAULTS["cases"], epochs: int = DEFAULTS["epochs"],
                  steps: int = DEFAULTS["steps"], plan: dict | None = None, train: dict | None = None,
                  tta: bool = False, cores: int = 2, seed: int = 0, fold: int = 0, nfolds: int = 5,
                  work_dir=None, out=None) -> dict:
    """Generate, run ours and nnU-Net, score both; write the report to `out` (JSON) if given.
    `plan`: our plan overrides (config `plan:`); `train`: further config `train:` settings."""
    from unet.bench.hard_cases import NAME, generate_hard_dataset
    from unet.bench.nnunet_preprocess import to_nnunet_raw
    from unet.bench.nnunet_train import run_nnunet_training
    from unet.bench.reference_env import nnunet_python
    from unet.io.atomic import write_json
    from unet.runtime import machine_info

    python = nnunet_python(nnunet_venv)  # before any work: a missing virtualenv stops here
    plan = plan or {k: DEFAULTS[k] for k in ("patch_size", "batch_size", "filters")}
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

        load_before, date = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        ours = run_ours(snakefile, work, workflow_config(work, NAME, fold, nfolds, plan, train, tta), cores)
        print(f"ours: {ours['wall_s']:.1f} s", flush=True)
        load_between = list(os.getloadavg())
        val_ids = ours["splits"][fold]["val"]
        batch = int(ours["plan"]["batch_size"])
        theirs = run_nnunet_training(python, work, DATASET_ID, raw.name, ours["plan"], ours["splits"],
                                     sorted(ours["splits"][fold]["train"] + val_ids), fold, epochs, steps,
                                     math.ceil(VALIDATION_PATCHES / batch), tta, cores)
        print(f"nnU-Net: {sum(theirs['wall_s'].values()):.1f} s", flush=True)
        settings = {"n_cases": n_cases, "seed": seed, "fold": fold, "nfolds": nfolds, "epochs": epochs,
                    "steps_per_epoch": steps, "tta": tta, "cores": cores, "plan_overrides": plan,
                    "train": train, "validation_cases": val_ids, "date": date,
                    "load_average_before": load_before, "load_average_between": load_between,
                    "load_average_after": list(os.getloadavg())}
        report = build_report(ours, theirs, score(ours["predictions"], data, val_ids, fold),
                              score(theirs["predictions"], data, val_ids, fold), settings,
                              machine_info(cores))
    if out is not None:
        write_json(out, report)
    return report


def _network(plan: dict) -> dict:
    return {k: plan[k] for k in ("spacing", "patch_size", "batch_size", "filters", "strides", "kernels")}


def build_report(ours: dict, theirs: dict, dice_ours: dict, dice_theirs: dict, settings: dict,
                 machine: dict) -> dict:
    """The benchmark's JSON: per-label scores side by side, epoch and wall times, the goals."""
    ours_train = [r["epoch_time_s"] for r in ours["epochs"]]
    theirs_train = [r["train_time_s"] for r in theirs["epochs"]]
    runtime = ours["epochs"][0].get("runtime", {}) if ours["epochs"] else {}
    labels = {name: {"ours": dice_ours[name], "nnunet": dice_theirs.get(name)} for name in dice_ours}
    same_network = json.loads(json.dumps(_network(ours["plan"]))) == json.loads(json.dumps(theirs["network"]))
    dice_goal = all(v["ours"]["dice"] is not None and v["nnunet"] is not None and v["nnunet"]["dice"] is not None
                    and v["ours"]["dice"] >= v["nnunet"]["dice"] - DICE_MARGIN for v in labels.values())
    return {
        **settings,
        "machine": {**machine, "onednn": runtime.get("onednn", machine.get("onednn")),
                    # Unset here means our `train` job set it to 1 (unet.runtime.configure_tensorflow).
                    "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")},
        "network": _network(ours["plan"]), "nnunet_network": theirs["network"], "same_network": same_network,
        "nnunet_transpose_forward": theirs["transpose_forward"],
        "labels": labels,
        "epochs_ours": [{"epoch": r["epoch"], "train_time_s": r["epoch_time_s"], "loss": r["loss"]}
                        for r in ours["epochs"]],
        "epochs_nnunet": theirs["epochs"],
        "train_time_s": {"ours": sum(ours_train), "nnunet": sum(theirs_train)},
        "median_epoch_s": {"ours": _median(ours_train), "nnunet": _median(theirs_train)},
        "wall_s": {"ours": {"workflow": ours["wall_s"],
                            **{f"{k}_job": v["wall_s"] for k, v in ours["rule_times"].items()}},
                   "nnunet": theirs["wall_s"]},
        # The same work, train and predict, in CPU-seconds: what another job's load moves least.
        "cpu_s": {"ours": {f"{k}_job": v["cpu_s"] for k, v in ours["rule_times"].items()},
                  "nnunet": {"train_and_predict": theirs["cpu_s"]["train_and_predict"]}},
        "goals": {f"Dice >= nnU-Net's - {DICE_MARGIN} on every label": dice_goal,
                  "less time in training steps (median epoch)": _median(ours_train) < _median(theirs_train),
                  "same network": same_network},
    }


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: dict) -> str:
    m, net = report["machine"], report["network"]
    lines = [
        f"accuracy benchmark: {report['n_cases']} cases, fold {report['fold']} "
        f"({len(report['validation_cases'])} validation cases), {report['epochs']} epochs x "
        f"{report['steps_per_epoch']} steps, batch {net['batch_size']}, patch {'x'.join(map(str, net['patch_size']))}, "
        f"filters {net['filters']}, tta {report['tta']}",
        f"  {m['cpu']} ({', '.join(m['vector_extensions']) or 'no AVX'}), {report['cores']} cores, "
        f"oneDNN {'on' if m['onednn'] else 'off'} (TF_ENABLE_ONEDNN_OPTS={m['tf_enable_onednn_opts']})",
        f"  {'label':<12} {'Dice ours':>10} {'nnU-Net':>8} {'pooled ours':>12} {'nnU-Net':>8} "
        f"{'HD95 ours':>10} {'nnU-Net':>8}",
    ]
    for name, v in report["labels"].items():
        o, t = v["ours"], v["nnunet"] or {}
        lines.append(f"  {name:<12} {_fmt(o['dice']):>10} {_fmt(t.get('dice')):>8} {_fmt(o['pooled_dice']):>12} "
                     f"{_fmt(t.get('pooled_dice')):>8} {_fmt(o['hd95_mm'], 1):>10} {_fmt(t.get('hd95_mm'), 1):>8}")
    lines.append("  training steps per epoch (s): ours "
                 + " ".join(f"{r['train_time_s']:.1f}" for r in report["epochs_ours"])
                 + "; nnU-Net " + " ".join(f"{r['train_time_s']:.1f}" for r in report["epochs_nnunet"]))
    t, med, w = report["train_time_s"], report["median_epoch_s"], report["wall_s"]
    if t["nnunet"] and med["nnunet"]:
        lines.append(f"  in training steps: median epoch ours {med['ours']:.1f} s, nnU-Net {med['nnunet']:.1f} s "
                     f"(ratio {med['ours'] / med['nnunet']:.2f}); all epochs ours {t['ours']:.1f} s, "
                     f"nnU-Net {t['nnunet']:.1f} s")
    lines.append("  wall (s): ours " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in w["ours"].items())
                 + "; nnU-Net " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in w["nnunet"].items()))
    cpu = report["cpu_s"]
    lines.append("  CPU (s): ours " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in cpu["ours"].items())
                 + "; nnU-Net " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in cpu["nnunet"].items()))
    lines.append(f"  measured {report['date']}; 1-min load average {report['load_average_before'][0]:.1f} before ours, "
                 f"{report['load_average_between'][0]:.1f} before nnU-Net, {report['load_average_after'][0]:.1f} after")
    lines.append("  goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["goals"].items()))
    return "\n".join(line for line in lines if line)


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
    args = parser.parse_args(argv)
    from unet.bench.reference_env import nnunet_python

    try:
        nnunet_python(args.nnunet_venv)  # a missing virtualenv stops here, before any work
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    plan = {"patch_size": args.patch, "batch_size": args.batch, "filters": args.filters}
    report = run_benchmark(args.nnunet_venv, Path(args.snakefile).resolve(), args.cases, args.epochs, args.steps,
                           plan, tta=args.tta, cores=args.cores, seed=args.seed, work_dir=args.keep,
                           out=args.out)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
