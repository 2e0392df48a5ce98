"""`--until RULE` from an empty results folder: the jobs of RULE and of what it needs, nothing
downstream, for every stage, whatever the dataset's source. Dry runs, but for one real run.

Snakemake's `--until` misses jobs that a checkpoint adds to the DAG (snakemake/snakemake#2824): it
reported "Nothing to be done" for preprocess and train. The case list is therefore read before any
job runs whenever it can be (rules/common.smk, `case_ids`); these tests hold that for each source.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from unet.io.demo import generate_demo

pytestmark = pytest.mark.workflow

# Each stage and every rule its jobs need (rule `all`, which needs everything, is never among them).
UPSTREAM = {"download": {"download"}}
for _rule, _needs in [("validate", "download"), ("fingerprint", "validate"),
                      ("plan", "fingerprint"), ("preprocess", "plan"), ("shard", "preprocess"),
                      ("split", "validate"), ("train", "shard"), ("predict", "train"), ("ensemble", "train"),
                      ("evaluate", "predict"), ("report", "evaluate")]:
    UPSTREAM[_rule] = UPSTREAM[_needs] | {_rule}
    if _rule == "train":
        UPSTREAM[_rule] |= UPSTREAM["split"]  # the folds' cases
UPSTREAM["postprocessing"] = UPSTREAM["predict"] | {"postprocessing"}
UPSTREAM["postprocess_test"] = UPSTREAM["ensemble"] | UPSTREAM["postprocessing"] | {"postprocess_test"}
UPSTREAM["report"] |= UPSTREAM["postprocessing"]  # summary.html shows the postprocessing steps
UPSTREAM["select_configuration"] = UPSTREAM["predict"] | {"select_configuration"}


def _workflow_tests():
    """tests/workflow/test_workflow.py as a module: its reduced demo config and helpers."""
    spec = importlib.util.spec_from_file_location("_workflow_tests",
                                                  Path(__file__).with_name("test_workflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOW = _workflow_tests()
N_TRAIN, NFOLDS = WORKFLOW.CONFIG["demo"]["n_train"], WORKFLOW.CONFIG["nfolds"]
# Jobs per rule of the reduced demo, where it is not one.
JOBS = {"preprocess": N_TRAIN, "train": NFOLDS, "predict": NFOLDS, "evaluate": NFOLDS}


def _config(tmp: Path, name: str, **top_level) -> Path:
    """The reduced demo config of test_workflow.py with top-level keys changed."""
    path = WORKFLOW._write_config(tmp, name)
    config = yaml.safe_load(path.read_text())
    config.update(top_level)
    path.write_text(yaml.safe_dump(config))
    return path


def until(tmp: Path, config: Path, rule: str) -> dict[str, int]:
    return WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp, config, "--dry-run", "--until", rule))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    """The demo, neither generated nor run: its case list comes from its settings."""
    tmp = tmp_path_factory.mktemp("demo")
    return tmp, _config(tmp, "config.yaml")


@pytest.mark.parametrize("rule", sorted(UPSTREAM))
def test_until_plans_the_stage_and_what_it_needs_only(demo, rule):
    tmp, config = demo
    jobs = until(tmp, config, rule)
    assert set(jobs) == UPSTREAM[rule]
    assert jobs[rule] == JOBS.get(rule, 1)
    assert not (tmp / "results").exists() and not (tmp / "data").exists()


def test_own_folder_on_disk(tmp_path):
    """A user's folder in MSD layout: the case list is its dataset.json."""
    generate_demo(tmp_path / "data" / "MyTask", n_train=3, n_test=1)
    config = _config(tmp_path, "own.yaml", task="MyTask")
    jobs = until(tmp_path, config, "preprocess")
    assert set(jobs) == UPSTREAM["preprocess"] and jobs["preprocess"] == 3
    jobs = until(tmp_path, config, "train")
    assert set(jobs) == UPSTREAM["train"] and jobs["train"] == NFOLDS


def test_brats_folder_to_ingest(tmp_path):
    """An ingest not converted yet: the case list is the source's patients (names only)."""
    source = tmp_path / "BraTS"
    for patient in ("P1", "P2", "P3"):
        for suffix in ("flair", "t1", "t1ce", "t2", "seg"):
            path = source / patient / f"{patient}_{suffix}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    config = _config(tmp_path, "ingest.yaml", task="BraTS",
                     ingest={"format": "brats", "source": str(source)})
    jobs = until(tmp_path, config, "preprocess")
    assert set(jobs) == UPSTREAM["preprocess"] and jobs["preprocess"] == 3
    assert not (tmp_path / "data").exists()


def test_msd_task_not_downloaded_says_to_download_first(tmp_path):
    """Only an MSD task not on disk has no case list yet: stages before it still work, later
    ones stop with a message instead of Snakemake's silent "Nothing to be done"."""
    config = _config(tmp_path, "msd.yaml", task="Task04_Hippocampus")
    assert set(until(tmp_path, config, "plan")) == UPSTREAM["plan"]
    result = WORKFLOW.snakemake(tmp_path, config, "--dry-run", "--until", "preprocess")
    assert result.returncode != 0
    assert "Run `snakemake --cores 1 download` first" in result.stdout + result.stderr
    jobs = WORKFLOW.planned_jobs(WORKFLOW.snakemake(tmp_path, config, "--dry-run"))
    assert set(jobs) == {"download", "case_list", "all"}  # the checkpoint lists the cases later


def test_a_real_run_stops_after_the_stage_and_the_next_one_continues(tmp_path):
    config = _config(tmp_path, "config.yaml")
    result = WORKFLOW.snakemake(tmp_path, config, "--until", "preprocess")
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results" / "demo"
    assert len(list((results / "preprocessed").glob("*_seg.npy"))) == N_TRAIN
    assert not (results / "shards").exists()
    assert until(tmp_path, config, "preprocess") == {}
    assert until(tmp_path, config, "train") == {"shard": 1, "split": 1, "train": NFOLDS}


def test_auto_configurations_are_known_once_planned(tmp_path):
    """`configurations: auto` trains what plans.json holds, so `--until` past planning waits for it
    (and says so), while the stages up to the plan still run."""
    config = _config(tmp_path, "auto.yaml", configurations="auto")
    assert set(until(tmp_path, config, "plan")) == UPSTREAM["plan"]
    result = WORKFLOW.snakemake(tmp_path, config, "--dry-run", "--until", "train")
    assert result.returncode != 0
    assert "Run `snakemake --cores 1 plan` first, or list the configurations" in result.stdout + result.stderr
