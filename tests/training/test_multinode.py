"""Training workers (unet/training/multinode.py): each worker's outputs and rank, and two CPU
workers on this machine training one fold together. Starting them: test_launch.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from unet.training import multinode


def test_worker_0_writes_the_fold_the_others_a_scratch_copy(tmp_path):
    fold = tmp_path / "fold_0"
    (fold / "checkpoints").mkdir(parents=True)
    (fold / "checkpoints" / "ckpt-3.index").write_text("x")
    (fold / "training_log.jsonl").write_text("{}\n")
    with multinode.worker_outputs(fold, fold / "model.keras", fold / "curves.png", rank=0, resume=True) as paths:
        assert paths == (fold, fold / "model.keras", fold / "curves.png")
    with multinode.worker_outputs(fold, fold / "model.keras", fold / "curves.png", rank=1, resume=True) as paths:
        scratch, model, curves = paths
        assert scratch != fold and model == scratch / "model.keras" and curves is None
        assert (scratch / "checkpoints" / "ckpt-3.index").is_file()  # resumes where worker 0 does
        assert (scratch / "training_log.jsonl").is_file()
    assert not scratch.exists()
    with multinode.worker_outputs(fold, fold / "model.keras", None, rank=2) as (scratch, _, _):
        assert not (scratch / "checkpoints").exists()  # a fresh run starts from nothing


def _two_workers(code: str, *args: str, cwd, port: int) -> list[str]:
    """Run `code` as the two tasks of an srun step on 127.0.0.1 (one node, two tasks); stdouts."""
    job_id = str(port - 20000)  # the resolver's ports are 20000 + job id % 20000
    workers = []
    for rank in (0, 1):
        env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": "2",
               "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_TASKS_PER_NODE": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        workers.append(subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=cwd, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        results = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
    return [out for out, _ in results]


SUM_OF_RANKS = """
import os
import tensorflow as tf
from unet.training.strategy import make_strategy
strategy = make_strategy(0, nodes=2)
one = strategy.run(lambda: tf.constant(float(os.environ["SLURM_PROCID"]) + 1.0))
print(type(strategy).__name__, strategy.num_replicas_in_sync,
      float(strategy.reduce(tf.distribute.ReduceOp.SUM, one, axis=None)), flush=True)
"""


def test_two_cpu_workers_on_this_machine_form_one_strategy(tmp_path, free_port_pair):
    # Each builds the multi-worker strategy; a sum across workers sees both (1 + 2).
    for out in _two_workers(SUM_OF_RANKS, cwd=tmp_path, port=free_port_pair()):
        assert out.split() == ["CollectiveAllReduceStrategy", "2", "3.0"]


TRAIN = """
import hashlib, json, sys
import keras, numpy as np
from pathlib import Path
from unet.preprocessing.plan import Plan
from unet.training import multinode
from unet.training.loop import train_fold
from unet.training.settings import TrainSettings
plan_file, shards, train_ids, val_ids, fold = sys.argv[1:]
settings = TrainSettings(epochs=2, steps_per_epoch=2, gpus=0, nodes=2, validation_patches=4)
rank = multinode.worker_rank()
with multinode.worker_outputs(fold, Path(fold) / "model.keras", Path(fold) / "curves.png", rank) as paths:
    rows = train_fold(Plan.load(plan_file), settings, shards, json.loads(train_ids), json.loads(val_ids),
                      out_dir=paths[0], model_path=paths[1], curves_path=paths[2])
    weights = keras.saving.load_model(paths[1], compile=False).get_weights()
digest = hashlib.sha1(b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest()
print(json.dumps({"rank": rank, "out": str(paths[0]), "loss": [r["loss"] for r in rows], "weights": digest}),
      flush=True)
"""


@pytest.mark.workflow
def test_two_cpu_workers_train_one_fold_together(demo_workspace, tmp_path, free_port_pair):
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps(demo_workspace.plan.to_json()))
    fold = tmp_path / "fold_0"
    outs = _two_workers(TRAIN, str(plan_file), str(demo_workspace.shard_dir), json.dumps(demo_workspace.train_ids),
                        json.dumps(demo_workspace.val_ids), str(fold), cwd=tmp_path, port=free_port_pair())
    reports = sorted((json.loads(out.strip().splitlines()[-1]) for out in outs), key=lambda r: r["rank"])
    # One training: the same losses on both workers; worker 0 wrote the fold, worker 1 only scratch.
    assert reports[0]["loss"] == reports[1]["loss"] and len(reports[0]["loss"]) == 2
    assert reports[0]["weights"] == reports[1]["weights"]  # both workers' models, bit for bit
    assert reports[0]["out"] == str(fold) and reports[1]["out"] != str(fold)
    for name in ("model.keras", "training_log.jsonl", "curves.png"):
        assert (fold / name).is_file(), name
    assert len((fold / "training_log.jsonl").read_text().splitlines()) == 2
    assert not os.path.exists(reports[1]["out"])


def test_a_horovod_rank_is_a_worker_rank(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.delenv("HOROVOD_RANK", raising=False)
    assert multinode.worker_rank() == 3
    monkeypatch.setenv("HOROVOD_RANK", "1")  # horovodrun's processes
    assert multinode.worker_rank() == 1
