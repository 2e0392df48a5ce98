"""The reduced demo of test_workflow.py through `--workflow-profile profiles/slurm`, on a real
SLURM controller: the one-node cluster of the `local_slurm` fixture (conftest.py).

The profile is used as it is; only what a user of a small cluster without accounting would add
is given on the command line: `--cores` and `--resources mem_mb` (which cap every job's CPUs and
memory to the node), and `--slurm-status-command squeue` (no slurmdbd, so no `sacct`).
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

REPO = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)")


def _workflow_tests():
    """tests/workflow/test_workflow.py as a module: its reduced demo config and helpers."""
    spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def submissions(output: str) -> Counter:
    """sbatch submissions per rule (`rule_train`) or group (`group_preprocess...`), from the
    executor's 'Job ... has been submitted with SLURM jobid ... (log: ...)' lines."""
    counts = Counter()
    for match in SUBMITTED.finditer(output):
        kind = re.search(r"/((?:rule|group)_\w+?)/", match.group(2))
        counts[kind.group(1) if kind else "?"] += 1
    return counts


@pytest.fixture(scope="module")
def slurm_run(local_slurm, tmp_path_factory):
    workflow = _workflow_tests()
    tmp = tmp_path_factory.mktemp("slurm")
    config = workflow._write_config(tmp, "config.yaml")  # train.gpus: 1, as config.yaml
    start = time.monotonic()
    result = workflow.snakemake(
        tmp, config, "--workflow-profile", str(REPO / "profiles" / "slurm"),
        "--resources", f"mem_mb={local_slurm.memory_mb // 2}",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs")
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "".join(f"\n== {p}\n{p.read_text()[-2000:]}"
                       for p in sorted((tmp / ".snakemake" / "slurm_logs").rglob("*.log")))
        pytest.fail(f"snakemake on SLURM failed after {seconds:.0f} s:\n{output[-6000:]}{logs[-6000:]}")
    counts = submissions(output)
    print(f"\nSLURM run of the reduced demo: {seconds:.0f} s, {sum(counts.values())} sbatch submissions "
          f"{dict(sorted(counts.items()))}")
    return workflow, tmp, config, counts


def test_the_reduced_demo_runs_through_slurm(slurm_run):
    workflow, tmp, config, _ = slurm_run
    summary = tmp / "results" / "demo" / "3d_fullres" / "evaluation" / "summary.json"
    assert summary.is_file()
    # The same outputs as the local run (test_workflow.py), in the same layout.
    workflow.test_every_output_of_the_contract_exists((tmp, config))


def test_preprocess_cases_share_a_submission_and_light_rules_stay_local(slurm_run):
    workflow, tmp, _, counts = slurm_run
    cases = list((tmp / "results" / "demo" / "preprocessed").glob("*_seg.npy"))
    assert len(cases) == workflow.CONFIG["demo"]["n_train"] == 6
    # group-components preprocess: 25 -> the 6 case jobs are one sbatch submission.
    assert sum(n for kind, n in counts.items() if kind.startswith("group_preprocess")) == 1
    assert "rule_preprocess" not in counts
    for local in ("rule_download", "rule_case_list", "rule_plan", "rule_split", "rule_select_configuration",
                  "rule_report", "rule_all"):
        assert local not in counts
    # The login node only downloads; checking the dataset is a job.
    assert counts["rule_validate"] == 1
    # One job per fold for train, predict and evaluate (2 folds).
    assert counts["rule_train"] == counts["rule_predict"] == counts["rule_evaluate"] == 2
    assert sum(counts.values()) < 6 + 10  # the 6 cases plus 10 other jobs, were nothing grouped


def test_gpu_jobs_asked_slurm_for_a_gpu(slurm_run):
    _, tmp, _, _ = slurm_run
    logs = tmp / ".snakemake" / "slurm_logs"
    for rule in ("train", "predict", "ensemble"):
        texts = [p.read_text() for p in (logs / f"rule_{rule}").rglob("*.log")]
        assert texts and all(re.search(r"resources: .*\bgpu=1\b", t) for t in texts), rule
    for rule in ("validate", "fingerprint", "shard", "evaluate"):
        assert not any("gpu=" in p.read_text() for p in (logs / f"rule_{rule}").rglob("*.log")), rule


def test_multi_node_training_asks_for_nodes_and_one_task_per_node(slurm_run):
    # A dry run: on this one-node cluster the job would pend forever. (Submitted to a controller,
    # this request reads NumNodes=2 NumTasks=2 NtasksPerN=1 TresPerTask=gres:gpu:4.)
    workflow, tmp, _, _ = slurm_run
    config = workflow._write_config(tmp, "nodes.yaml", train__nodes=2, train__gpus=4)
    result = workflow.snakemake(tmp, config, "--workflow-profile", str(REPO / "profiles" / "slurm"),
                                "--slurm-status-command", "squeue", "--dry-run", "--until", "train")
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = re.findall(r"^rule train:\n(.*?)(?:\n\n|\Z)", result.stdout + result.stderr, re.M | re.S)
    assert len(blocks) == 2
    for block in blocks:
        resources = re.search(r"resources: (.*)", block).group(1)
        assert "nodes=2, tasks=2, mpi=srun" in resources
        assert "slurm_extra=--ntasks-per-node=1 --gpus-per-task=4" in resources
        assert "gpu=" not in resources  # would become --gpus (total) and, with tasks, --ntasks-per-gpu


def test_a_second_run_submits_nothing(slurm_run):
    workflow, tmp, config, _ = slurm_run
    result = workflow.snakemake(tmp, config, "--workflow-profile", str(REPO / "profiles" / "slurm"),
                                "--slurm-status-command", "squeue", "--dry-run")
    assert workflow.planned_jobs(result) == {}
