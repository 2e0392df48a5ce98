"""Preprocessing benchmark: our validate + fingerprint + plan + preprocess against nnU-Net v2's
`nnUNetv2_plan_and_preprocess -c 3d_fullres --verify_dataset_integrity` on the same cases, ours
measured twice: in one process, and as users run it (Snakemake, one job per case).

The dataset is generated (`unet.bench.synthetic`: BraTS-like 4-channel MRI, most cases
resampled), written once in MSD layout (ours) and converted to nnU-Net v2's raw layout (one file
per channel, `unet.bench.nnunet_preprocess`). Each side runs as a fresh process with `cores`
worker processes, so both wall times include interpreter start-up and imports:

- ours, in one process: this module with `--run-ours`: `prepare_dataset`'s checks,
  `compute_fingerprint`, `make_plans`, then `preprocess_case` per case in a pool of `cores`
  processes (the rules' work without a start-up per job);
- ours, as users run it: `snakemake --cores {cores} --until preprocess` on the same folder, in a
  scratch folder (`unet.bench.startup.run_workflow`; the workflow's Snakefile is passed in,
  `--snakefile`): validate, fingerprint, plan, then one job per case, each a fresh Python process;
  its outputs must equal the in-process ones voxel for voxel;
- nnU-Net: its CLI from its own virtualenv (`make bench-env`) with `-np` and `-npfp` set to
  `cores`; its stages are timed from the moments its progress messages appear.

Ours and nnU-Net's outputs are then compared voxel by voxel (`unet.bench.compare`) and reported
here, each of our two times with its ratio to nnU-Net's; the CPU seconds of each run (its
process and every child) too, which, unlike wall times, other work on the machine leaves be.

    python -m unet.bench.preprocess --nnunet-venv .bench/nnunet-venv --snakefile Snakefile --cases 8 --cores 2 \
        --out preprocess.json

Only the standard library is imported at module level: our side's timed process starts from this
module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_RATIO = 0.5
GOAL_CORRELATION = 0.99
SPACING_TOLERANCE = 1e-4  # NIfTI headers hold float32 spacings; the two readers round differently


# --- our side ---------------------------------------------------------------------------------

def _preprocess_one(args):
    from unet.preprocessing.preprocess import preprocess_case

    case, plan, out_dir = args
    return preprocess_case(case, plan, out_dir)


def run_ours(data_dir: str | Path, out_dir: str | Path, cores: int) -> dict:
    """Our stages as the rules run them; writes fingerprint.json, plans.json, preprocessed/ under
    `out_dir` and returns stage times (s), the target spacing and the shape per case."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from unet.io.atomic import write_json
    from unet.io.datasets import prepare_dataset
    from unet.preprocessing.fingerprint import compute_fingerprint
    from unet.preprocessing.plan import Plan
    from unet.preprocessing.planning import make_plans

    out_dir, times = Path(out_dir), {}
    start = time.perf_counter()
    # A user's folder: the checks only (every voxel is read, as nnU-Net's --verify_dataset_integrity).
    dataset = prepare_dataset(Path(data_dir).name, data_dir, workers=cores)
    times["validate"] = time.perf_counter() - start
    write_json(out_dir / "fingerprint.json", compute_fingerprint(dataset, workers=cores))
    times["fingerprint"] = time.perf_counter() - start - sum(times.values())
    write_json(out_dir / "plans.json", make_plans(json.loads((out_dir / "fingerprint.json").read_text())))
    plan = Plan.load(out_dir / "plans.json")
    times["plan"] = time.perf_counter() - start - sum(times.values())
    jobs = [(case, plan, out_dir / "preprocessed") for case in dataset.training]
    with ProcessPoolExecutor(max_workers=max(1, cores)) as pool:
        geometries = list(tqdm(pool.map(_preprocess_one, jobs), total=len(jobs), desc="preprocess",
                               unit="case"))
    times["preprocess"] = time.perf_counter() - start - sum(times.values())
    return {"stages": times, "spacing": list(plan.spacing),
            "shapes": {g.case: list(g.resampled_shape) for g in geometries}}


def _time_ours(data_dir: Path, out_dir: Path, cores: int, log: Path) -> float:
    """`run_ours` in a fresh process of this interpreter (this module, --run-ours), output to
    `log`; its wall time. The process inherits this one's environment, so imports the same `unet`."""
    args = ["--run-ours", str(data_dir), str(out_dir), "--cores", str(cores)]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "unet.bench.preprocess", *args],
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{sys.executable} -m unet.bench.preprocess {' '.join(args)} failed "
                           f"(exit {proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


# --- the whole benchmark ----------------------------------------------------------------------

def _time_workflow(snakefile: Path, data_dir: Path, cores: int, scratch: Path, in_process: Path,
                   cases: list[str]) -> dict:
    """Our workflow through Snakemake up to preprocess (`run_workflow`), its jobs' own times from
    their benchmark TSVs, and whether it wrote what the in-process run did."""
    import numpy as np

    from unet.bench.startup import job_seconds, run_workflow

    shutil.rmtree(scratch, ignore_errors=True)
    run = run_workflow(snakefile, data_dir, scratch, cores, "preprocess", log=scratch.parent / "workflow.log")
    written = run["results"] / "preprocessed"
    same = all(np.array_equal(np.load(in_process / f"{c}{suffix}.npy"), np.load(written / f"{c}{suffix}.npy"))
               for c in cases for suffix in ("", "_seg"))
    return {"wall": run["wall"], "cpu": run["cpu"], "command": run["command"], "same_outputs": same,
            "jobs_s": {rule: sum(job_seconds(run["results"], rule)) for rule in ("fingerprint", "preprocess")}}


def run_benchmark(nnunet_venv: str | Path | None, n_cases: int = 8, cores: int = 2, seed: int = 0,
                  work_dir: str | Path | None = None, out: str | Path | None = None,
                  snakefile: str | Path | None = None) -> dict:
    """Generate, run both sides, compare; write the report to `out` (JSON) if given.
    `nnunet_venv`: the folder of nnU-Net v2's virtualenv (`make bench-env`); `snakefile`: the
    workflow's, to time ours as users run it too (its config.yaml beside it; None: not)."""
    from unet.bench.compare import compare_outputs
    from unet.bench.nnunet_preprocess import DATASET_ID, read_nnunet_outputs, run_nnunet, to_nnunet_raw
    from unet.bench.reference_env import nnunet_python
    from unet.bench.startup import children_cpu
    from unet.bench.synthetic import AXCODES, NAME, generate_dataset
    from unet.io.atomic import write_json
    from unet.runtime import machine_info

    python = nnunet_python(nnunet_venv)  # before any work: a missing virtualenv stops here
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        shutil.rmtree(work / "nnUNet_preprocessed", ignore_errors=True)
        start = time.perf_counter()
        msd = generate_dataset(work / "msd" / NAME, n_cases, seed, workers=cores)
        raw = to_nnunet_raw(msd, work / "nnUNet_raw", DATASET_ID, workers=cores)
        print(f"generated {n_cases} cases in {time.perf_counter() - start:.1f} s under {work}", flush=True)

        # Other work on the machine slows both sides: the load average says how busy it was.
        load_before, date = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        ours_dir = work / "ours"
        shutil.rmtree(ours_dir, ignore_errors=True)
        ours_dir.mkdir(parents=True)
        # CPU seconds too: unlike wall times, other work on the machine leaves them be.
        cpu = children_cpu()
        wall = _time_ours(msd, ours_dir, cores, log=work / "ours.log")
        ours = {"wall": wall, "cpu": children_cpu() - cpu, **json.loads((ours_dir / "result.json").read_text())}
        print(f"ours, in one process: {wall:.1f} s", flush=True)
        as_run = None
        if snakefile is not None:
            as_run = _time_workflow(Path(snakefile), msd, cores, work / "workflow", ours_dir / "preprocessed",
                                    list(ours["shapes"]))
            print(f"ours, through Snakemake: {as_run['wall']:.1f} s", flush=True)
        cpu = children_cpu()
        nnunet = run_nnunet(python, raw.parent, work, DATASET_ID, cores, work / "nnunet.log")
        nnunet["cpu"] = children_cpu() - cpu
        print(f"nnU-Net: {nnunet['wall']:.1f} s", flush=True)

        pre = work / "nnUNet_preprocessed" / raw.name
        read_nnunet_outputs(python, pre / "nnUNetPlans_3d_fullres", work / "nnunet_npy",
                            log=work / "read_nnunet.log")
        settings = {"n_cases": n_cases, "seed": seed, "voxel_order": AXCODES,
                    "date": date, "machine": machine_info(cores),
                    "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
        compared = compare_outputs(list(ours["shapes"]), ours_dir, pre, work / "nnunet_npy")
        report = build_report(ours, nnunet, compared["spacing_nnunet"], compared["cases"],
                              compared["axis_mapping"], cores, {**settings, **compared["normalization"]},
                              as_run)
    if out is not None:
        write_json(out, report)
    return report


def build_report(ours: dict, nnunet: dict, spacing_nnunet: list[float], cases: list[dict],
                 mapping: dict, cores: int, settings: dict, workflow: dict | None = None) -> dict:
    """The benchmark's JSON: times, ratio, spacings, shapes, correlations and the goals' verdicts.

    `ours`/`nnunet`: {"wall": s, "stages": {name: s}} and "cpu" (s) if measured (ours also
    "spacing"); `spacing_nnunet` already in our axis order; `cases`: compare_case results;
    `workflow`: our run through Snakemake ({"wall", "cpu", "command", "same_outputs", "jobs_s"})
    if timed, reported beside the in-process one with its own ratio and goals."""
    ratio = ours["wall"] / nnunet["wall"]
    spacing_match = len(ours["spacing"]) == len(spacing_nnunet) and all(
        abs(a - b) <= SPACING_TOLERANCE * max(1.0, abs(b)) for a, b in zip(ours["spacing"], spacing_nnunet))
    correlations = [r for c in cases for r in (c["correlation"] or [])]
    min_corr = min(correlations) if correlations else None
    shapes_match = all(c["shapes_match"] for c in cases) and bool(cases)
    report = {
        **settings, "cores": cores,
        "ours": {"wall_s": ours["wall"], "stages_s": ours["stages"], **_cpu(ours)},
        "nnunet": {"wall_s": nnunet["wall"], "stages_s": nnunet["stages"], **_cpu(nnunet),
                   **({"command": nnunet["command"]} if "command" in nnunet else {})},
        "ratio": ratio,
        "spacing": {"ours": list(ours["spacing"]), "nnunet": list(spacing_nnunet), "match": spacing_match},
        "axis_mapping": mapping,
        "cases": cases,
        "min_correlation": min_corr,
        "goals": {
            f"ratio <= {GOAL_RATIO}": ratio <= GOAL_RATIO,
            "same spacing": spacing_match,
            "same shapes": shapes_match,
            f"correlation >= {GOAL_CORRELATION}": min_corr is not None and shapes_match
            and min_corr >= GOAL_CORRELATION,
        },
    }
    if "cpu" in ours and "cpu" in nnunet:
        report["cpu_ratio"] = ours["cpu"] / nnunet["cpu"]
    if workflow is not None:
        report["workflow"] = {"wall_s": workflow["wall"], "cpu_s": workflow["cpu"], "jobs_s": workflow["jobs_s"],
                              "command": workflow["command"], "same_outputs": workflow["same_outputs"]}
        report["workflow_ratio"] = workflow["wall"] / nnunet["wall"]
        if "cpu" in nnunet:
            report["workflow_cpu_ratio"] = workflow["cpu"] / nnunet["cpu"]
        report["goals"].update({
            f"ratio through Snakemake <= {GOAL_RATIO}": report["workflow_ratio"] <= GOAL_RATIO,
            "Snakemake writes the same": workflow["same_outputs"]})
    return report


def _cpu(run: dict) -> dict:
    return {"cpu_s": run["cpu"]} if "cpu" in run else {}


def format_report(report: dict) -> str:
    def stages(d):
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items())

    def cpu(run, ratio_key):
        return (f"; {run['cpu_s']:.1f} s CPU, ratio {report[ratio_key]:.3f}"
                if "cpu_s" in run and ratio_key in report else "")

    ours, nnunet = report["ours"], report["nnunet"]
    lines = [
        f"preprocessing benchmark: {report.get('n_cases', len(report['cases']))} cases, "
        f"{report['cores']} cores (ratios: ours / nnU-Net)",
        f"  ours, in one process   {ours['wall_s']:7.1f} s  ratio {report['ratio']:.3f} (goal <= {GOAL_RATIO})"
        f"{cpu(ours, 'cpu_ratio')}",
        f"      ({stages(ours['stages_s'])})",
    ]
    if "workflow" in report:
        run = report["workflow"]
        lines += [
            f"  ours, through Snakemake{run['wall_s']:7.1f} s  ratio {report['workflow_ratio']:.3f}"
            f"{cpu(run, 'workflow_cpu_ratio')}",
            f"      (`{run['command']}`; jobs' own wall time: {stages(run['jobs_s'])}; outputs "
            f"{'the same as in one process' if run['same_outputs'] else 'DIFFER from the in-process ones'})",
        ]
    lines += [
        f"  nnU-Net                {nnunet['wall_s']:7.1f} s" + (f"; {nnunet['cpu_s']:.1f} s CPU" if "cpu_s" in nnunet else ""),
        f"      ({stages(nnunet['stages_s'])})",
        f"  target spacing: ours {_fmt(report['spacing']['ours'])}, nnU-Net (our axes) "
        f"{_fmt(report['spacing']['nnunet'])}, {'match' if report['spacing']['match'] else 'DIFFER'}",
        f"  axis mapping nnU-Net -> ours: {report['axis_mapping']}",
        f"  {'case':<12} {'shape ours':<16} {'shape nnU-Net':<16} correlation per channel",
    ]
    for c in report["cases"]:
        corr = " ".join(f"{r:.5f}" for r in c["correlation"]) if c["correlation"] else "-"
        lines.append(f"  {c['case']:<12} {'x'.join(map(str, c['shape_ours'])):<16} "
                     f"{'x'.join(map(str, c['shape_nnunet'])):<16} {corr}"
                     f"{'' if c['shapes_match'] else '  SHAPES DIFFER'}")
    if report["min_correlation"] is not None:
        lines.append(f"  lowest correlation {report['min_correlation']:.6f} (goal >= {GOAL_CORRELATION})")
    if "load_average_before" in report:
        lines.append(f"  measured {report['date']}; 1-min load average {report['load_average_before'][0]:.1f} "
                     f"before, {report['load_average_after'][0]:.1f} after")
    lines.append("  goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["goals"].items()))
    return "\n".join(lines)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.preprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnunet-venv", help="folder of nnU-Net v2's virtualenv (required; `make bench-env` "
                                              "builds .bench/nnunet-venv)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--snakefile", help="the workflow's Snakefile: time ours through Snakemake too, "
                                            "as users run it (with the config.yaml beside it)")
    parser.add_argument("--run-ours", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_ours:  # the timed process of our side
        result = run_ours(args.run_ours[0], args.run_ours[1], args.cores)
        (Path(args.run_ours[1]) / "result.json").write_text(json.dumps(result, indent=1))
        return 0
    from unet.bench.reference_env import nnunet_python

    try:
        nnunet_python(args.nnunet_venv)  # a missing virtualenv stops here, before any work
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    if args.snakefile is not None and not Path(args.snakefile).is_file():
        parser.error(f"--snakefile {args.snakefile}: no such file")
    report = run_benchmark(args.nnunet_venv, args.cases, args.cores, args.seed, args.keep, args.out, args.snakefile)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
