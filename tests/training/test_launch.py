"""Starting a fold's training (unet/training/launch.py): which path each setting takes, the
commands, the job file the workers read, and workers that start from it on their own (no
Snakemake script), with no TensorFlow in the launching process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from unet.training import launch
from unet.training.multinode import TrainJob
from unet.training.settings import TrainSettings

WORKER = [sys.executable, "-m", "unet.training.multinode"]


def _job(tmp_path, **settings) -> TrainJob:
    fold = tmp_path / "fold_0"
    return TrainJob(plans=str(tmp_path / "plans.json"), shards=str(tmp_path / "shards"), train=("a", "b"),
                    val=("c",), out_dir=str(fold), model=str(fold / "model.keras"),
                    curves=str(fold / "training_curves.png"), settings=TrainSettings(**settings))


@pytest.fixture
def restored_env(monkeypatch):
    """monkeypatch, also undoing what launch() sets in os.environ for its workers (threads, GPUs)."""
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):
        absent = name not in os.environ
        monkeypatch.setenv(name, os.environ.get(name, ""))  # recorded, so restored (or removed) after
        if absent:
            monkeypatch.delenv(name)
    return monkeypatch


def test_each_setting_takes_its_path():
    assert launch.launch_mode(TrainSettings()) == "process"
    assert launch.launch_mode(TrainSettings(gpus=4)) == "process"
    assert launch.launch_mode(TrainSettings(nodes=2)) == "nodes"
    assert launch.launch_mode(TrainSettings(distribution="multiworker", nodes=3)) == "nodes"
    assert launch.launch_mode(TrainSettings(distribution="horovod")) == "horovod"
    assert launch.launch_mode(TrainSettings(distribution="horovod", nodes=2)) == "horovod"


def test_srun_starts_one_task_per_node_with_its_gpus_and_cpus():
    job = "/shared/results/Task04/fold_0/train_job.json"
    cmd = launch.srun_command(job, nodes=3, gpus=4, cpus=16)
    assert cmd[:8] == ["srun", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--cpus-per-task=16",
                       "--kill-on-bad-exit=1", "--label", "--gpus-per-task=4"]
    # Each task re-enters through the package's module, not through a copy of the rule's script.
    assert cmd[8:] == [*WORKER, job]
    # CPU nodes ask for no GPUs; the launcher may carry options (the rule's `mpi` resource).
    cpu = launch.srun_command(job, nodes=2, gpus=0, cpus=8, launcher="srun --mpi=pmix")
    assert cpu[:2] == ["srun", "--mpi=pmix"] and not any(a.startswith("--gpus") for a in cpu)


def test_launching_outside_a_slurm_job_names_the_setting(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="train.nodes=2"):
        launch.launch_workers("train_job.json", nodes=2, gpus=1, cpus=4)


def test_horovod_workers_one_per_gpu_by_srun_or_horovodrun(tmp_path, monkeypatch):
    job = tmp_path / "horovod_job.json"
    python = "/repo/.venv-horovod/bin/python"
    worker = [python, "-m", "unet.training.multinode", str(job)]
    # In a SLURM job: one srun task per GPU over all nodes, each with one GPU.
    assert launch.horovod_command(job, python, gpus=4, nodes=2, launcher="srun --mpi=pmix", in_slurm=True) == [
        "srun", "--mpi=pmix", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--kill-on-bad-exit=1", "--label",
        "--gpus-per-task=1", *worker]
    # Elsewhere: horovodrun (beside that Python) with Gloo, one process per GPU, at least one.
    assert launch.horovod_command(job, python, gpus=2, nodes=1) == [
        "/repo/.venv-horovod/bin/horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", *worker]
    assert launch.horovod_command(job, python, gpus=0, nodes=1)[1:3] == ["-np", "1"]
    # Horovod's Python: .venv-horovod's where this one has no Horovod, else a clear error.
    if launch.find_horovod() is None:
        with pytest.raises(RuntimeError, match="make horovod-env"):
            launch.horovod_python(tmp_path)
        (tmp_path / ".venv-horovod" / "bin").mkdir(parents=True)
        (tmp_path / ".venv-horovod" / "bin" / "python").write_text("")
        assert launch.horovod_python(tmp_path) == str(tmp_path / ".venv-horovod" / "bin" / "python")


def test_the_job_file_round_trips(tmp_path):
    job = _job(tmp_path, epochs=3, nodes=2, regions={"core": [1, 2]}, amp="bfloat16", resume=True)
    path = job.save(tmp_path / "fold_0" / "train_job.json")
    assert TrainJob.load(path) == job
    written = json.loads(path.read_text())
    assert written["train"] == ["a", "b"] and written["settings"]["regions"] == {"core": [1, 2]}


def test_a_job_file_may_give_only_some_settings(tmp_path):
    # As written by hand (tests/training/test_distributed.py): the others take their defaults.
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"plans": "p.json", "shards": "s", "train": ["a"], "val": ["b"], "out_dir": "f",
                                "model": "f/model.keras", "curves": None,
                                "settings": {"epochs": 2, "distribution": "horovod"}}))
    job = TrainJob.load(path)
    assert job.settings == TrainSettings(epochs=2, distribution="horovod") and job.curves is None
    path.write_text(json.dumps({**json.loads(path.read_text()), "settings": {"epoch": 2}}))
    with pytest.raises(ValueError, match=r"config train: unknown keys \['epoch'\]"):
        TrainJob.load(path)


def test_a_fold_job_takes_its_split_and_the_regions_the_download_stage_found(tmp_path):
    splits, ready = tmp_path / "splits.json", tmp_path / "dataset.ok"
    splits.write_text(json.dumps([{"train": ["b", "c"], "val": ["a"]}, {"train": ["a"], "val": ["b", "c"]}]))
    ready.write_text(json.dumps({"regions": {"whole": [1, 2], "core": [2]}}))
    model = tmp_path / "fold_1" / "model.keras"
    job = TrainJob.for_fold(splits, 1, plans="plans.json", shards="shards", model=model, curves=None,
                            config={"epochs": 2, "regions": "dataset", "resume": True}, dataset_ok=ready)
    assert (job.train, job.val, job.out_dir, job.model) == (("a",), ("b", "c"), str(model.parent), str(model))
    assert job.settings == TrainSettings(epochs=2, regions={"whole": [1, 2], "core": [2]}, resume=True)


def test_one_node_trains_in_this_process(tmp_path, restored_env):
    trained = []
    restored_env.setattr(launch, "train_worker", lambda job, rank=0: trained.append((job, rank)))
    job = _job(tmp_path)
    launch.launch(job, threads=3, log=tmp_path / "logs" / "train.log")
    assert trained == [(job, 0)]
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3"  # set before the training imports TensorFlow
    assert (tmp_path / "logs" / "train.log").is_file() and not (tmp_path / "fold_0").exists()


def test_horovod_workers_read_the_job_file(tmp_path, restored_env):
    started = []
    restored_env.setattr(launch, "subprocess", SimpleNamespace(run=lambda cmd, check: started.append(cmd)))
    restored_env.setattr(launch, "find_horovod", lambda: None)
    restored_env.delenv("SLURM_JOB_ID", raising=False)
    (tmp_path / ".venv-horovod" / "bin").mkdir(parents=True)
    (tmp_path / ".venv-horovod" / "bin" / "python").write_text("")
    job = _job(tmp_path, distribution="horovod", gpus=2)
    launch.launch(job, threads=2, horovod_repo=tmp_path)
    job_file = tmp_path / "fold_0" / launch.JOB_FILE
    python = str(tmp_path / ".venv-horovod" / "bin" / "python")
    assert started == [launch.horovod_command(job_file, python, gpus=2, nodes=1)]
    assert started[0][-4:] == [python, "-m", "unet.training.multinode", str(job_file)]
    assert TrainJob.load(job_file) == job


RECORDING_SRUN = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/srun_args"
"""

LAUNCH_NODES = """
import json, sys
from unet.training import launch
from unet.training.multinode import TrainJob
launch.launch(TrainJob.load(sys.argv[1]), threads=4, log=sys.argv[2])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras"})))
"""


def test_the_batch_step_starts_one_worker_per_node_without_tensorflow(tmp_path):
    job = _job(tmp_path, nodes=2, gpus=1)
    described = job.save(tmp_path / "described.json")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(RECORDING_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "SLURM_JOB_ID": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-c", LAUNCH_NODES, str(described), str(tmp_path / "train.log")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == []  # the batch step only waits: no TensorFlow, no Keras
    job_file = tmp_path / "fold_0" / launch.JOB_FILE
    assert (bin_dir / "srun_args").read_text().splitlines() == launch.srun_command(job_file, 2, 1, 4)[1:]
    assert TrainJob.load(job_file) == job
    assert "starting one training process per node" in (tmp_path / "train.log").read_text()


# An srun for one node: starts --ntasks copies of the command as the tasks of one step on 127.0.0.1.
LOCAL_SRUN = """#!{python}
import os, subprocess, sys
args = sys.argv[1:]
tasks = int(next(a for a in args if a.startswith("--ntasks=")).split("=")[1])
cmd = args[next(i for i, a in enumerate(args) if not a.startswith("--")):]
steps = [subprocess.Popen(cmd, env={{**os.environ, "SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(tasks),
                                     "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_TASKS_PER_NODE": str(tasks)}})
         for rank in range(tasks)]
sys.exit(max(step.wait() for step in steps))
"""


@pytest.mark.workflow
def test_two_workers_started_by_launch_train_the_fold(demo_workspace, tmp_path, restored_env, free_port_pair):
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps(demo_workspace.plan.to_json()))
    fold = tmp_path / "fold_0"
    job = TrainJob(plans=str(plan_file), shards=str(demo_workspace.shard_dir), train=tuple(demo_workspace.train_ids),
                   val=tuple(demo_workspace.val_ids), out_dir=str(fold), model=str(fold / "model.keras"),
                   curves=str(fold / "curves.png"),
                   settings=TrainSettings(epochs=2, steps_per_epoch=2, gpus=0, nodes=2, validation_patches=4))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(LOCAL_SRUN.format(python=sys.executable))
    (bin_dir / "srun").chmod(0o755)
    restored_env.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    restored_env.setenv("SLURM_JOB_ID", str(free_port_pair() - 20000))  # the resolver's ports: 20000 + job id
    restored_env.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    log = tmp_path / "train.log"
    launch.launch(job, threads=1, log=log)
    for name in ("model.keras", "model_best.keras", "model.json", "training_log.jsonl", "curves.png", launch.JOB_FILE):
        assert (fold / name).is_file(), name
    assert len((fold / "training_log.jsonl").read_text().splitlines()) == 2
    # Both workers printed their epochs into the batch step's log: one training, the same loss and
    # validation Dice on both (throughput may differ).
    # (Anywhere in a line, and possibly two on one: the workers share the log, and one's progress bar
    # or summary may not have ended its line when the other's summary arrives.)
    text = re.sub(r"(epoch \d+/2: loss)", r"\n\1", log.read_text())
    epochs = [line[:line.rindex(",")] for line in re.findall(r"epoch \d+/2: loss[^\n]*", text)]
    assert len(epochs) == 4 and len(set(epochs)) == 2, log.read_text()[-3000:]


def test_the_input_pipeline_gets_half_of_a_slurm_jobs_memory(monkeypatch):
    from unet.training.launch import input_memory_mb

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert input_memory_mb(32000) is None  # a workstation: Snakemake's mem_mb is no limit
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert input_memory_mb(32000) == 16000
    assert input_memory_mb(None) is None
