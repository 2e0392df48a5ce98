"""Recovery after Snakemake itself is killed (power loss, `kill -9`, an OOM killer) mid-training:
the next run stops on the lock, `--unlock` clears it, the same command then resumes the fold from
its checkpoint (`train.resume: true`), and every epoch is logged exactly once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.workflow
_spec = importlib.util.spec_from_file_location("_workflow_tests", Path(__file__).with_name("test_workflow.py"))
_workflow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_workflow)  # its reduced demo config and helpers
SNAKEMAKE, REPO, _write_config, snakemake = _workflow.SNAKEMAKE, _workflow.REPO, _workflow._write_config, \
    _workflow.snakemake
EPOCHS = 6


def _history(fold_dir):
    path = fold_dir / "checkpoints" / "training_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_workflow_unlocks_and_resumes_with_every_epoch_logged_once(tmp_path):
    config = _write_config(tmp_path, "config.yaml", train__epochs=EPOCHS, train__steps_per_epoch=40,
                           train__resume=True)
    fold_dir = tmp_path / "results" / "demo" / "3d_fullres" / "fold_0"
    target = str(fold_dir / "training_log.jsonl")
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(config), "--cores", "2", target]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while len(_history(fold_dir)) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # Snakemake and its jobs, as a power loss would
    run.wait()
    done = len(_history(fold_dir))
    assert 2 <= done < EPOCHS, f"the kill should land mid-training, after {done} epoch(s)"

    locked = snakemake(tmp_path, config, target)
    assert locked.returncode != 0 and "lock" in (locked.stdout + locked.stderr).lower()
    unlock = snakemake(tmp_path, config, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    resumed = snakemake(tmp_path, config, target)
    assert resumed.returncode == 0, resumed.stderr[-5000:]

    log = [json.loads(line) for line in (fold_dir / "training_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(EPOCHS))
    log_file = tmp_path / "results" / "demo" / "logs" / "train" / "3d_fullres" / "fold_0.log"
    assert "resuming from" in log_file.read_text()
