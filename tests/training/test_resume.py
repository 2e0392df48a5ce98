"""Resume after a hard kill: a training process SIGKILLed in the middle of an epoch, then resumed,
ends at the same optimizer step count, and with `deterministic`, the same weights and losses, as an
uninterrupted run. Each run is a separate process, as a Snakemake job is."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
import tensorflow as tf

from unet.training.settings import TrainSettings

EPOCHS, STEPS = 2, 200  # an epoch must outlast the progress bar's 1 s redraw interval
SETTINGS = TrainSettings(epochs=EPOCHS, steps_per_epoch=STEPS, validation_patches=2, seed=3, deterministic=True)

TRAIN = """
import json, sys
from unet.runtime import configure_tensorflow
configure_tensorflow(1)
from unet.preprocessing.plan import Plan
from unet.training.loop import train_fold
from unet.training.settings import TrainSettings
job = json.load(open(sys.argv[1]))
train_fold(Plan.from_json(job["plan"]), TrainSettings(**job["settings"]), job["shard_dir"], job["train_ids"],
           job["val_ids"], job["out_dir"], job["out_dir"] + "/model.keras")
"""


def _start(ws, out_dir, settings) -> subprocess.Popen:
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {"plan": ws.plan.to_json(), "settings": asdict(settings), "shard_dir": str(ws.shard_dir),
           "train_ids": list(ws.train_ids), "val_ids": list(ws.val_ids), "out_dir": str(out_dir)}
    (out_dir / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(out_dir / "job.json")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def _checkpoint(out_dir) -> dict:
    """Epoch, optimizer step count and every variable (weights, optimizer moments, Dice EMA) of
    the fold's last checkpoint."""
    reader = tf.train.load_checkpoint(str(out_dir / "checkpoints" / "last"))
    weights = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
               if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    return {"epoch": int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
            "iterations": int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")),
            "weights": weights}


def _log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "training_log.jsonl").read_text().splitlines()]


def _kill_mid_epoch(proc: subprocess.Popen, epoch: int) -> int:
    """SIGKILL `proc` once its progress bar shows epoch `epoch` (1-based) part done; the step seen."""
    bar = re.compile(rf"epoch {epoch}/{EPOCHS}:\s+\d+%\|[^|]*\|\s*(\d+)/{STEPS}")
    seen: list[int] = []

    def watch():  # tqdm redraws its bar on stderr with carriage returns
        buffer = ""
        while not seen:
            char = proc.stderr.read(1)
            if not char:
                return
            buffer = buffer[-200:] + char
            match = bar.search(buffer)
            if match and 0 < int(match.group(1)) < STEPS:
                seen.append(int(match.group(1)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the stdout pipe drained
    watcher.join(timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen, f"epoch {epoch} never showed progress before the timeout"
    return seen[0]


@pytest.fixture(scope="module")
def runs(demo_workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    start = time.perf_counter()
    whole, again = root / "uninterrupted", root / "again"
    both = [_start(demo_workspace, whole, SETTINGS), _start(demo_workspace, again, SETTINGS)]  # side by side
    for proc in both:
        _finish(proc)
    killed = root / "killed"
    step = _kill_mid_epoch(_start(demo_workspace, killed, SETTINGS), epoch=2)
    at_kill = _checkpoint(killed)
    log_at_kill = _log(killed)
    resumed_stdout = _finish(_start(demo_workspace, killed, replace(SETTINGS, resume=True)))
    print(f"resume runs took {time.perf_counter() - start:.1f} s; killed at step {step} of epoch 2")
    return dict(whole=whole, again=again, killed=killed, at_kill=at_kill, log_at_kill=log_at_kill,
                resumed_stdout=resumed_stdout)


def test_deterministic_runs_give_identical_weights(runs):
    first, second = _checkpoint(runs["whole"]), _checkpoint(runs["again"])
    assert first["iterations"] == second["iterations"] == EPOCHS * STEPS
    assert first["weights"].keys() == second["weights"].keys()
    assert sum(v.size for v in first["weights"].values()) > 1000  # the network's weights are there
    for name, value in first["weights"].items():
        np.testing.assert_array_equal(value, second["weights"][name], err_msg=name)
    assert [row["loss"] for row in _log(runs["whole"])] == [row["loss"] for row in _log(runs["again"])]


def test_killed_mid_epoch_and_resumed_matches_an_uninterrupted_run(runs):
    # Killed inside epoch 2: the checkpoint and the log hold epoch 1 only.
    assert runs["at_kill"]["epoch"] == 1 and runs["at_kill"]["iterations"] == STEPS
    assert [row["epoch"] for row in runs["log_at_kill"]] == [0]
    assert "resuming from" in runs["resumed_stdout"] and "after epoch 1" in runs["resumed_stdout"]

    whole, resumed = _checkpoint(runs["whole"]), _checkpoint(runs["killed"])
    assert resumed["epoch"] == whole["epoch"] == EPOCHS
    assert resumed["iterations"] == whole["iterations"] == EPOCHS * STEPS
    # The same patches in the same order, the same optimizer state and learning rates: the same weights.
    for name, value in whole["weights"].items():
        np.testing.assert_array_equal(value, resumed["weights"][name], err_msg=name)
    whole_log, resumed_log = _log(runs["whole"]), _log(runs["killed"])
    assert [row["epoch"] for row in resumed_log] == list(range(EPOCHS))
    for key in ("loss", "val_dice", "ema_val_dice", "learning_rate"):
        assert [row[key] for row in resumed_log] == [row[key] for row in whole_log], key
