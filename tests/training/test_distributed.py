"""The distributed training step (unet/training/distribution.py, steps.py) on CPU, each setup in
fresh processes with a time limit: MirroredStrategy over two logical CPU devices, two
MultiWorkerMirroredStrategy workers on 127.0.0.1, two Horovod ranks (horovodrun --gloo).

Every run trains our network (the demo plan's, 16^3 patches) for a few SGD steps on random patches
and reports its weights; the replicas must end identical, and two replicas with batch b must
match one replica with batch 2b."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
HOROVOD_PYTHON = REPO / ".venv-horovod" / "bin" / "python"
TIMEOUT = 600

# The training both sides run: `train(distribution, per-replica batch, steps, data seed)`.
TRAINING = r'''
import hashlib, json, sys
import numpy as np
import keras
import tensorflow as tf
from unet.model.losses import dice_ce_loss
from unet.model.network import build_from_plan
from unet.preprocessing.plan import Plan
from unet.training.distribution import Distribution, TFDistribution, apply_without_all_reduce, make_distribution
from unet.training.steps import make_train_step, set_precision

PLAN = Plan.load(sys.argv[2])
STEPS = 3


def patches(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *PLAN.patch_size, PLAN.num_channels)).astype("float32")
    segs = rng.integers(0, PLAN.num_classes, size=(n, *PLAN.patch_size)).astype("int32")
    return images, segs


def make_dataset(batch, seed):
    return tf.data.Dataset.from_tensor_slices(patches(8, seed)).repeat().batch(batch, drop_remainder=True)


def train(distribution, batch, seed, initial=None):
    set_precision(False)
    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = build_from_plan(PLAN)
        if initial is not None:
            model.set_weights(initial)
        optimizer = apply_without_all_reduce(keras.optimizers.SGD(0.5))
        optimizer.build(model.trainable_variables)
    distribution.broadcast([*model.variables, *optimizer.variables])
    start = model.get_weights()
    step = make_train_step(model, optimizer, dice_ce_loss, distribution)
    batches = distribution.batches(make_dataset, batch, seed)
    losses = [float(step(next(batches))) for _ in range(STEPS)]
    return model, losses, start


def flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64)


def report(model, losses, start, **extra):
    w = flat(model.get_weights())
    print(json.dumps({"digest": hashlib.sha1(w.tobytes()).hexdigest(), "moved": float(np.abs(w - flat(start)).max()),
                      "losses": losses, **extra}), flush=True)


mode = sys.argv[1]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    single, single_losses, initial = train(Distribution(), 2, 0)
    mirrored = TFDistribution(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    model, losses, start = train(mirrored, 1, 0, initial=initial)  # the same start as the single replica
    copies = [[np.asarray(c) for c in mirrored.strategy.experimental_local_results(v.value)] for v in model.weights]
    report(model, losses, start, replicas=mirrored.replicas,
           copies_identical=all(np.array_equal(c[0], c[1]) for c in copies),
           max_diff_to_single=float(np.abs(flat(model.get_weights()) - flat(single.get_weights())).max()),
           single_losses=single_losses)
elif mode in ("multiworker", "horovod"):
    distribution = make_distribution(mode, 0, 2)
    first = next(distribution.batches(make_dataset, 1, 0))
    local = distribution.strategy.experimental_local_results(first[0])[0] if mode == "multiworker" else first[0]
    model, losses, start = train(distribution, 1, 0)
    report(model, losses, start, rank=distribution.rank, replicas=distribution.replicas,
           first_patch_sum=float(np.sum(local)))
'''


def _script(tmp_path, demo_workspace) -> tuple[Path, Path]:
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps(demo_workspace.plan.to_json()))
    script = tmp_path / "replica_training.py"
    script.write_text(TRAINING)
    return script, plan_file


def _reports(outs: list[str]) -> list[dict]:
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_mirrored_replicas_match_one_replica_with_the_whole_batch(demo_workspace, tmp_path):
    script, plan_file = _script(tmp_path, demo_workspace)
    done = subprocess.run([sys.executable, str(script), "mirrored", str(plan_file)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = _reports([done.stdout])[0]
    assert report["replicas"] == 2
    assert report["copies_identical"]
    assert report["moved"] > 1e-3  # the steps did train
    # Averaged gradients of two batches of 1 = the gradient of their batch of 2.
    assert report["max_diff_to_single"] < 1e-4
    np.testing.assert_allclose(report["losses"], report["single_losses"], rtol=1e-4)


def _run_all(processes: list[subprocess.Popen]) -> list[str]:
    try:
        results = [p.communicate(timeout=TIMEOUT) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (out, err) in zip(processes, results):
        assert p.returncode == 0, (out + err)[-3000:]
    return [out for out, _ in results]


def _assert_one_training(reports: list[dict]) -> None:
    assert [r["rank"] for r in reports] == [0, 1] and all(r["replicas"] == 2 for r in reports)
    assert reports[0]["first_patch_sum"] != reports[1]["first_patch_sum"]  # each rank its own data
    assert reports[0]["digest"] == reports[1]["digest"]                    # ... and the same weights
    assert reports[0]["losses"] == reports[1]["losses"]
    assert reports[0]["moved"] > 1e-3


def test_multiworker_workers_end_with_identical_weights(demo_workspace, tmp_path, free_port_pair):
    script, plan_file = _script(tmp_path, demo_workspace)
    job_id = str(free_port_pair() - 20000)  # the resolver's ports are 20000 + job id % 20000
    workers = [subprocess.Popen([sys.executable, str(script), "multiworker", str(plan_file)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(SLURM_JOB_ID=job_id, SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS="2",
                                         SLURM_STEP_NODELIST="127.0.0.1", SLURM_STEP_TASKS_PER_NODE="2"))
               for rank in (0, 1)]
    _assert_one_training(sorted(_reports(_run_all(workers)), key=lambda r: r["rank"]))


@pytest.fixture(scope="session")
def horovod_python() -> Path:
    """.venv-horovod's Python, built with `make horovod-env` when missing (takes many minutes)."""
    if not (REPO / ".venv-horovod" / ".installed").is_file():
        done = subprocess.run(["make", "horovod-env"], cwd=REPO, capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, f"make horovod-env failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return HOROVOD_PYTHON


@pytest.mark.horovod
def test_horovod_ranks_end_with_identical_weights(demo_workspace, tmp_path, horovod_python):
    script, plan_file = _script(tmp_path, demo_workspace)
    horovodrun = horovod_python.parent / "horovodrun"
    run = subprocess.Popen([str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo", "--start-timeout", "120",
                            str(horovod_python), str(script), "horovod", str(plan_file)],
                           cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=_env(PATH=f"{horovod_python.parent}{os.pathsep}{os.environ.get('PATH', '')}"))
    out = _run_all([run])[0]
    # horovodrun prefixes each rank's lines with "[rank]<stdout>:".
    reports = [json.loads(line.split(":", 1)[1]) for line in out.splitlines() if '"digest"' in line]
    _assert_one_training(sorted(reports, key=lambda r: r["rank"]))


@pytest.mark.workflow
@pytest.mark.horovod
def test_two_horovod_ranks_train_one_fold(demo_workspace, tmp_path, horovod_python):
    """The loop's Horovod path end to end, as the train rule starts it (unet.training.launch)."""
    from unet.training import launch

    fold = tmp_path / "fold_0"
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps(demo_workspace.plan.to_json()))
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "plans": str(plan_file), "shards": str(demo_workspace.shard_dir), "train": demo_workspace.train_ids,
        "val": demo_workspace.val_ids, "out_dir": str(fold), "model": str(fold / "model.keras"),
        "curves": str(fold / "curves.png"),
        "settings": {"epochs": 2, "steps_per_epoch": 2, "gpus": 0, "distribution": "horovod",
                     "validation_patches": 4}}))
    cmd = launch.horovod_command(job, str(horovod_python), gpus=2, nodes=1)
    run = subprocess.Popen(cmd, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    out = _run_all([run])[0]
    epochs = {rank: [line.split(":", 1)[1] for line in out.splitlines() if line.startswith(f"[{rank}]<stdout>:epoch")]
              for rank in (0, 1)}
    assert len(epochs[0]) == 2
    # One training: the same loss and validation Dice on both ranks (throughput may differ).
    assert [e[:e.rindex(",")] for e in epochs[0]] == [e[:e.rindex(",")] for e in epochs[1]]
    for name in ("model.keras", "training_log.jsonl", "curves.png"):
        assert (fold / name).is_file(), name
    assert len((fold / "training_log.jsonl").read_text().splitlines()) == 2
