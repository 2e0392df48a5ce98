"""Recipe ablation: what each of our training and prediction switches does to Dice on the accuracy
benchmark's hard dataset (`unet.bench.hard_cases`).

Our workflow runs fold 0 once with the package's defaults and once per variant, each variant one
switch flipped (nnU-Net v2's or NVIDIA's choice), every run repeated for each seed (`train.seed`:
weights, patches and augmentation), all on the same generated cases and split. The runs share one
work folder, so Snakemake reruns only what a switch changes (a `predict.tta` variant reuses the
trained model). Per label: mean Dice over the validation cases, per seed and averaged over seeds,
and its difference to the defaults; the median epoch time beside it.

    python -m unet.bench.ablation --snakefile Snakefile --seeds 0 1 --out ablation.json

Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from unet.bench.accuracy import DEFAULTS, add_dataset_arguments, run_ours, workflow_config
from unet.bench.accuracy_report import score

# Each variant: the config sections it changes from the defaults (one switch each).
VARIANTS: dict[str, dict] = {
    "defaults": {},
    # Right after the defaults: it reuses their trained model (only predict reruns).
    "predict.tta: true": {"predict": {"tta": True}},
    "train.recipe: nnunet": {"train": {"recipe": "nnunet"}},
    "train.recipe: nvidia": {"train": {"recipe": "nvidia"}},
    "train.oversampling_rule: nnunet": {"train": {"oversampling_rule": "nnunet"}},
    # The default was 4 until this ablation measured 1 better (docs/benchmarks.md).
    "train.patches_per_case: 4": {"train": {"patches_per_case": 4}},
    # nnU-Net v2's planner turns batch Dice on for 2d, and for 3d_fullres when it also plans a
    # 3d_lowres (not on this small dataset, so its 3d_fullres here has it off).
    "train.batch_dice: true": {"train": {"batch_dice": True}},
    # The `ours` recipe's Adam rate before this ablation made it 0.003 (docs/benchmarks.md).
    "train.learning_rate: 0.001": {"train": {"learning_rate": 0.001}},
}


def variant_config(work: Path, task: str, variant: dict, seed: int, epochs: int, steps: int, plan: dict,
                   fold: int = 0, nfolds: int = 5) -> dict:
    """The workflow config of one run: the benchmark's, with the variant's switches and the seed."""
    unknown = set(variant) - {"train", "predict"}
    if unknown:
        raise ValueError(f"variant changes {sorted(unknown)}: only train and predict settings are ablated")
    train = {**variant.get("train", {}), "seed": int(seed), "epochs": int(epochs), "steps_per_epoch": int(steps)}
    config = workflow_config(work, task, fold, nfolds, plan, train, tta=False)
    config["predict"] = {**config["predict"], **variant.get("predict", {})}
    return config


def run_ablation(snakefile, variants: dict[str, dict] | None = None, seeds=(0, 1), n_cases: int = DEFAULTS["cases"],
                 epochs: int = DEFAULTS["epochs"], steps: int = DEFAULTS["steps"], plan: dict | None = None,
                 cores: int = 2, data_seed: int = 0, work_dir=None, out=None, progress=print) -> dict:
    """Every variant for every seed; the report (JSON-ready), also written to `out` if given."""
    from unet.bench.hard_cases import NAME, generate_hard_dataset
    from unet.io.atomic import write_json
    from unet.runtime import machine_info

    variants = VARIANTS if variants is None else variants
    if "defaults" not in variants:
        variants = {"defaults": {}, **variants}
    plan = plan or {k: DEFAULTS[k] for k in ("patch_size", "batch_size", "filters")}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ablation-") as tmp:
        work = (Path(work_dir) if work_dir else Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        for stale in ("results", ".snakemake"):
            shutil.rmtree(work / stale, ignore_errors=True)
        data = work / "data" / NAME
        if not (data / "dataset.json").is_file():
            generate_hard_dataset(data, n_cases, data_seed, workers=cores)
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for seed in seeds:
            for name, variant in variants.items():
                config = variant_config(work, NAME, variant, seed, epochs, steps, plan)
                ours = run_ours(snakefile, work, config, cores)
                val_ids = ours["splits"][0]["val"]
                dice = {label: v["dice"] for label, v in score(ours["predictions"], data, val_ids, 0).items()}
                epoch_times = [row["epoch_time_s"] for row in ours["epochs"]]
                runs.append({"variant": name, "seed": seed, "dice": dice, "wall_s": ours["wall_s"],
                             "median_epoch_s": statistics.median(epoch_times) if epoch_times else None,
                             "load_average": list(os.getloadavg()),
                             # The run's training log: the next run overwrites it in the shared folder.
                             "epochs": ours["epochs"]})
                progress(f"seed {seed}, {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in dice.items())
                         + f" ({ours['wall_s']:.0f} s)")
        report = {"n_cases": n_cases, "data_seed": data_seed, "seeds": list(seeds), "epochs": epochs,
                  "steps_per_epoch": steps, "plan_overrides": plan, "cores": cores, "date": date,
                  "machine": machine_info(cores), "variants": variants, "runs": runs,
                  "summary": summarize(runs)}
    if out is not None:
        write_json(out, report)
    return report


def summarize(runs: list[dict]) -> dict:
    """Per variant and label: mean Dice over seeds, its spread, and the difference to the defaults'
    mean (over the seeds both have)."""
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    baseline = {run["seed"]: run["dice"] for run in by_variant.get("defaults", [])}
    summary = {}
    for name, rows in by_variant.items():
        labels = {}
        for label in rows[0]["dice"]:
            values = [r["dice"][label] for r in rows]
            paired = [r["dice"][label] - baseline[r["seed"]][label] for r in rows
                      if r["seed"] in baseline and None not in (r["dice"][label], baseline[r["seed"]][label])]
            known = [v for v in values if v is not None]
            labels[label] = {"per_seed": values, "mean": statistics.fmean(known) if known else None,
                             "min": min(known) if known else None, "max": max(known) if known else None,
                             "vs_defaults": statistics.fmean(paired) if paired else None}
        epochs = [r["median_epoch_s"] for r in rows if r["median_epoch_s"] is not None]
        summary[name] = {"labels": labels, "median_epoch_s": statistics.median(epochs) if epochs else None}
    return summary


def _fmt(value, digits: int = 3, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(report: dict) -> str:
    """A Markdown table: a row per variant, per label its mean Dice (min-max over seeds) and the
    difference to the defaults."""
    summary = report["summary"]
    labels = list(next(iter(summary.values()))["labels"])
    m = report["machine"]
    head = (f"recipe ablation: {report['n_cases']} cases, fold 0, {report['epochs']} epochs x "
            f"{report['steps_per_epoch']} steps, seeds {report['seeds']}; {m['cpu']}, {report['cores']} cores, "
            f"oneDNN {'on' if m.get('onednn') else 'off'}; {report['date']}")
    lines = [head, "", "| variant | " + " | ".join(labels) + " | median epoch (s) |",
             "|:--|" + ":-:|" * (len(labels) + 1)]
    for name, row in summary.items():
        cells = []
        for label in labels:
            v = row["labels"][label]
            spread = f" ({_fmt(v['min'])}-{_fmt(v['max'])})" if len(v["per_seed"]) > 1 else ""
            delta = "" if name == "defaults" else f" {_fmt(v['vs_defaults'], signed=True)}"
            cells.append(f"{_fmt(v['mean'])}{spread}{delta}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(row['median_epoch_s'], 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--snakefile", required=True, help="the workflow's Snakefile (each run goes through it)")
    add_dataset_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="train.seed of the repeated runs")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                        help=f"variants to run besides the defaults (default: all of {', '.join(VARIANTS)})")
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variants} if args.variants else None
    plan = {"patch_size": args.patch, "batch_size": args.batch, "filters": args.filters}
    report = run_ablation(Path(args.snakefile).resolve(), variants, args.seeds, args.cases, args.epochs, args.steps,
                          plan, cores=args.cores, data_seed=args.seed, work_dir=args.keep, out=args.out)
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
