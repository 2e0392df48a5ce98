"""Our workflow as users run it, and what one of its jobs costs beyond its work.

Users run Snakemake: one job per case, each a fresh Python process (interpreter, imports,
dataset.json, plan), scheduled and recorded by Snakemake's main process.

- `run_workflow`: `snakemake --cores N --until RULE` on a dataset folder in MSD layout, from a
  scratch folder of its own (config, results, .snakemake); `unet.bench.preprocess` times it
  beside its in-process figure.
- `measure_startup` (this module's command line): many tiny cases (16^3, one channel), their
  preprocess stage through Snakemake against the same cases preprocessed one after another in
  one process. What a job costs beyond that work is its start-up:

    python -m unet.bench.startup --snakefile Snakefile --cases 1000 --cores 2 --out startup.json

The workflow's Snakefile is passed in (as the reference virtualenvs are), and its config file, by
default the config.yaml beside it; Snakemake runs as a program (`python -m snakemake`), never
imported.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# --- the workflow, as users run it ------------------------------------------------------------

def write_config(configfile: Path, data_dir: Path, scratch: Path) -> Path:
    """The workflow's config (`configfile`), but for another dataset (`data_dir`, an MSD folder
    whose name is the task) and results folder (under `scratch`); written as scratch/config.yaml."""
    import yaml

    config = yaml.safe_load(Path(configfile).read_text())
    config.update(task=data_dir.name, data_dir=str(data_dir.parent.resolve()),
                  results=str((scratch / "results").resolve()))
    path = scratch / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(snakefile: Path, scratch: Path, config: Path, cores: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(Path(snakefile).resolve()),
            "--directory", str(scratch), "--configfile", str(config), "--cores", str(cores), *args]


def run_workflow(snakefile: str | Path, data_dir: str | Path, scratch: str | Path, cores: int,
                 until: str = "preprocess", log: str | Path | None = None, extra: tuple[str, ...] = (),
                 configfile: str | Path | None = None) -> dict:
    """`snakemake --cores {cores} --until {until}` of the workflow `snakefile` with its config
    (`configfile`, default: config.yaml beside it) on `data_dir`, in `scratch`, timed; its output
    goes to `log` (default scratch/snakemake-{until}.log). Returns {"wall": s, "cpu": CPU s of
    Snakemake and its jobs, "results": the task's results folder, "command": as a user types it}."""
    snakefile, data_dir, scratch = Path(snakefile), Path(data_dir), Path(scratch)
    configfile = Path(configfile) if configfile else snakefile.with_name("config.yaml")
    for path in (snakefile, configfile):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; pass the workflow's (--snakefile, --configfile)")
    scratch.mkdir(parents=True, exist_ok=True)
    config = write_config(configfile, data_dir, scratch)
    cmd = snakemake_command(snakefile, scratch, config, cores, "--until", until, *extra)
    log = Path(log) if log else scratch / f"snakemake-{until}.log"
    start, cpu_start = time.perf_counter(), children_cpu()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu_start
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return {"wall": wall, "cpu": cpu, "results": scratch / "results" / data_dir.name,
            "command": " ".join(["snakemake", "--cores", str(cores), "--until", until, *extra])}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs: Snakemake's
    main process and every job it ran. Unlike wall time, other work on the machine leaves it be."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def job_seconds(results: Path, rule: str) -> list[float]:
    """Wall time (s) of each job of `rule`, from the TSVs its `benchmark:` directive wrote under
    results/benchmarks/ (one per job under {rule}/, e.g. preprocess/{data}/{case}.tsv, else {rule}.tsv)."""
    folder = Path(results) / "benchmarks"
    files = sorted((folder / rule).rglob("*.tsv")) if (folder / rule).is_dir() else [folder / f"{rule}.tsv"]
    seconds = []
    for path in files:
        with open(path, newline="") as f:
            seconds.append(float(next(csv.DictReader(f, delimiter="\t"))["s"]))
    return seconds


# --- start-up per job -------------------------------------------------------------------------

def time_in_process(data_dir: Path, plans: Path, out_dir: Path) -> dict[str, list[float]]:
    """Wall and CPU seconds of `preprocess_case` per case, one case after another in this
    process, imports done and the first case run once before the clock starts."""
    from unet.io.msd import load_dataset
    from unet.preprocessing.plan import Plan
    from unet.preprocessing.preprocess import preprocess_case

    dataset, plan = load_dataset(data_dir), Plan.load(plans)
    preprocess_case(dataset.training[0], plan, out_dir / "warm-up")
    times = {"wall": [], "cpu": []}
    for case in dataset.training:
        wall, cpu = time.perf_counter(), time.process_time()
        preprocess_case(case, plan, out_dir)
        times["wall"].append(time.perf_counter() - wall)
        times["cpu"].append(time.process_time() - cpu)
    return times


def measure_startup(snakefile: str | Path, n_cases: int = 1000, cores: int = 2, shape=(16, 16, 16),
                    seed: int = 0, work_dir: str | Path | None = None, out: str | Path | None = None,
                    configfile: str | Path | None = None) -> dict:
    """Generate `n_cases` tiny cases, run the workflow up to `plan`, then time its preprocess
    stage alone (and, before it, a dry run: Snakemake's own start-up and DAG); write the report
    to `out` (JSON) if given."""
    from unet.bench.synthetic import TINY_NAME, write_tiny_dataset
    from unet.io.atomic import write_json
    from unet.runtime import machine_info

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        for name in ("data", "workflow", "in_process"):
            shutil.rmtree(work / name, ignore_errors=True)
        data = write_tiny_dataset(work / "data" / TINY_NAME, n_cases, shape, seed)
        scratch = work / "workflow"
        run = functools.partial(run_workflow, snakefile, data, scratch, cores, configfile=configfile)
        before = run("plan")
        print(f"{n_cases} cases generated, validated, fingerprinted and planned in {before['wall']:.1f} s",
              flush=True)
        dry_run = run("preprocess", scratch / "dry-run.log", ("--dry-run",))
        load_before, date = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        stage = run("preprocess")
        print(f"preprocess stage through Snakemake: {stage['wall']:.1f} s", flush=True)
        jobs = job_seconds(stage["results"], "preprocess")
        work_times = time_in_process(data, stage["results"] / "plans.json", work / "in_process")
        load_after = list(os.getloadavg())
    report = startup_report(stage, dry_run, jobs, work_times, cores, {
        "n_cases": n_cases, "shape": list(shape), "channels": 1, "seed": seed, "date": date,
        "command": stage["command"], "load_average_before": load_before, "load_average_after": load_after,
        "machine": machine_info(cores)})
    if out is not None:
        write_json(out, report)
    return report


def startup_report(stage: dict, dry_run: dict, jobs: list[float], work: dict[str, list[float]],
                   cores: int, settings: dict) -> dict:
    """What a job costs beyond its case's work (measured in one process: `work`), twice:

    - wall: the core-seconds the stage spent per job (wall x cores / jobs), of which the job's
      own process (its benchmark TSV's wall time) and Snakemake's handling between jobs (the
      rest, its DAG included); other work on the machine inflates these;
    - CPU: the CPU seconds of Snakemake and all its jobs per job, which other work leaves be.

    `stage`, `dry_run`: `run_workflow` results; `jobs`: each job's TSV wall time (s)."""
    n = len(jobs)
    per_job, cpu_per_job = stage["wall"] * cores / n, stage["cpu"] / n
    work_wall, work_cpu = (sum(work[k]) / len(work[k]) for k in ("wall", "cpu"))
    job_process = sum(jobs) / n
    return {
        **settings, "cores": cores, "jobs": n,
        "wall_s": stage["wall"], "cpu_s": stage["cpu"],
        "dry_run_wall_s": dry_run["wall"], "dry_run_cpu_s": dry_run["cpu"],
        "per_job_s": per_job, "work_per_case_s": work_wall,
        "startup_per_job_s": per_job - work_wall, "startup_share": 1 - work_wall / per_job,
        "job_process_s": job_process, "in_job_startup_s": job_process - work_wall,
        "snakemake_per_job_s": per_job - job_process,
        "cpu_per_job_s": cpu_per_job, "work_cpu_per_case_s": work_cpu,
        "startup_cpu_per_job_s": cpu_per_job - work_cpu, "startup_cpu_share": 1 - work_cpu / cpu_per_job,
    }


def format_startup(report: dict) -> str:
    shape = "x".join(map(str, report["shape"]))
    r = report
    lines = [
        f"start-up benchmark: {r['jobs']} preprocess jobs ({shape}, {r['channels']} channel), {r['cores']} cores",
        f"  preprocess stage through Snakemake: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU "
        f"(a dry run, Snakemake's start-up and DAG: {r['dry_run_wall_s']:.1f} s, {r['dry_run_cpu_s']:.1f} s CPU)",
        "                          per job   its work   start-up (share)",
        f"  wall x cores / jobs   {r['per_job_s']:8.3f} s {r['work_per_case_s']:8.4f} s "
        f"{r['startup_per_job_s']:8.3f} s ({100 * r['startup_share']:.1f} %)",
        f"  CPU / jobs            {r['cpu_per_job_s']:8.3f} s {r['work_cpu_per_case_s']:8.4f} s "
        f"{r['startup_cpu_per_job_s']:8.3f} s ({100 * r['startup_cpu_share']:.1f} %)",
        f"  of the wall start-up: {r['in_job_startup_s']:.3f} s in the job's own process (interpreter, imports, "
        f"dataset.json, plan), {r['snakemake_per_job_s']:.3f} s in Snakemake between jobs",
    ]
    if "load_average_before" in r:
        lines.append(f"  measured {r['date']}; 1-min load average {r['load_average_before'][0]:.1f} before, "
                     f"{r['load_average_after'][0]:.1f} after")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--snakefile", required=True, help="the workflow's Snakefile")
    parser.add_argument("--configfile", help="its config file (default: config.yaml beside the Snakefile); "
                                             "its task, data_dir and results are replaced")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[16, 16, 16])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    report = measure_startup(args.snakefile, args.cases, args.cores, tuple(args.shape), args.seed,
                             args.keep, args.out, args.configfile)
    print(format_startup(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
