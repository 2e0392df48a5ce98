"""The custom training loop: `tf.GradientTape` steps under a tf.distribute strategy or Horovod.

A custom loop rather than `model.fit`, because `fit` under MultiWorkerMirroredStrategy is
broken in Keras 3 (tensorflow#72388) and multi-node training builds on this loop.
A 2d plan trains its 2D network on slices of the same 3D cases (`slice_axis`, unet.data.pipeline).
A cascade (3d_cascade_fullres) trains on shards whose images carry the previous stage's one-hot
channels after the image's (`unet.data.shards`); the network takes `plan.input_channels`.
Checkpoints: `checkpoints/last` every epoch (weights, optimizer state, epoch, Dice EMA) for
`resume`, `checkpoints/best.weights.h5` on the best EMA of the validation pseudo Dice. Without
validation cases (fold `all`) the log has no Dice, and the best checkpoint is the final weights.
A fresh run starts from `settings.init_weights` if set (unet.training.pretrained). At the end the
final and the best weights are saved as prediction models (`model.keras`, `model_best.keras`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from unet.data.pipeline import training_epochs, validation_patches
from unet.data.shards import INDEX, shard_channels
from unet.io.atomic import atomic_path
from unet.model.saved import load_weights
from unet.preprocessing.plan import Plan
from unet.runtime import machine_info
from unet.training.curves import plot_training_curves
from unet.training.distribution import apply_without_all_reduce, make_distribution
from unet.training.objective import Objective
from unet.training.optimizers import make_optimizer
from unet.training.pretrained import load_initial_weights
from unet.training.schedules import learning_rate
from unet.training.settings import TrainSettings
from unet.training.steps import make_train_step, set_precision, with_xla_fallback

log = logging.getLogger(__name__)
EMA_DECAY = 0.9  # nnU-Net's smoothing of the per-epoch validation Dice


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 31-bit seed for one epoch's data and random ops, from (seed, epoch) alone."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


class FoldTrainer:
    """Trains one fold; `run()` returns the training log (one dict per epoch)."""

    def __init__(self, plan: Plan, settings: TrainSettings, shard_dir: str | Path,
                 train_ids: Sequence[str], val_ids: Sequence[str], out_dir: str | Path):
        self.plan, self.settings = plan, settings
        self.shard_dir, self.train_ids, self.val_ids = Path(shard_dir), list(train_ids), list(val_ids)
        self.out_dir = Path(out_dir)
        self.objective = Objective(plan, settings)
        self.labels = self.objective.structure_names

    # -- setup ---------------------------------------------------------------------------
    def _build(self):
        s = self.settings
        keras.utils.set_random_seed(s.seed)
        set_precision(s.amp)
        self.distribution = make_distribution(s.distribution, s.gpus, s.nodes)
        self.replicas = self.distribution.replicas
        with self.distribution.scope():
            self.model = self.objective.build_model()
            # Gradients reach the optimizer averaged over replicas (Distribution.all_reduce_mean).
            self.optimizer = apply_without_all_reduce(make_optimizer(s))
            # Creating the optimizer's slots now lets a checkpoint restore them immediately.
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.ema = tf.Variable(-1.0, dtype=tf.float32, trainable=False)
            self.best_ema = tf.Variable(-1.0, dtype=tf.float32, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                              ema=self.ema, best_ema=self.best_ema)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.out_dir / "checkpoints" / "last",
                                                  max_to_keep=1)

    @property
    def _history_path(self) -> Path:
        # The log of every epoch lives with the checkpoint: Snakemake deletes an interrupted job's
        # declared outputs (training_log.jsonl) before it reruns, never the checkpoint folder.
        return self.out_dir / "checkpoints" / "training_log.jsonl"

    def _restore_or_reset(self) -> list[dict]:
        if self.settings.resume and self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            done = int(self.epoch.numpy())
            history = self._history_path
            rows = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
            print(f"resuming from {self.manager.latest_checkpoint} after epoch {done}")
            return [r for r in rows if r["epoch"] < done]
        # A fresh run must not resume from, or keep, another run's state.
        shutil.rmtree(self.out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(self.out_dir / "tensorboard", ignore_errors=True)
        if self.settings.init_weights:
            print(load_initial_weights(self.model, self.settings.init_weights).summary(), flush=True)
        return []

    def _steps(self):
        model, optimizer, objective = self.model, self.optimizer, self.objective
        inference_model = objective.inference_model(model)
        # After a restore: every replica starts from rank 0's weights and optimizer state.
        self.distribution.broadcast([*model.variables, *optimizer.variables])
        if self.settings.xla and not tf.config.list_physical_devices("GPU"):
            log.warning("config train.xla: no GPU here, and XLA-compiled 3D convolutions on a CPU are about "
                        "10x slower than TensorFlow's oneDNN kernels; set train.xla: false for CPU training")
        train_step = with_xla_fallback(
            lambda jit: make_train_step(model, optimizer, objective.loss, self.distribution, jit_compile=jit,
                                        grad_clip=self.settings.grad_clip),
            self.settings.xla)

        @tf.function
        def predict(images):
            return inference_model(images, training=False)

        return train_step, predict

    # -- loop ----------------------------------------------------------------------------
    def _validate(self, predict, images, segs) -> dict[str, float]:
        k = len(self.labels)
        tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
        batch = max(1, self.plan.batch_size)
        for i in range(0, len(images), batch):
            counts = self.objective.confusion(segs[i:i + batch], predict(images[i:i + batch]))
            tp, fp, fn = tp + np.asarray(counts[0]), fp + np.asarray(counts[1]), fn + np.asarray(counts[2])
        dice = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        return {name: float(dice[i]) for i, name in enumerate(self.labels)}

    def run(self) -> list[dict]:
        s, plan = self.settings, self.plan
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if s.deterministic:
            # Process-wide and irreversible: every op then picks a deterministic kernel (or fails).
            tf.config.experimental.enable_op_determinism()
        check_shards(self.shard_dir, plan)
        print(f"{len(self.train_ids)} training cases, "
              + (f"{len(self.val_ids)} validation cases" if self.val_ids else "no validation (fold all)"), flush=True)
        self._build()
        rows = self._restore_or_reset()
        train_step, predict = self._steps()
        global_batch = plan.batch_size * self.replicas
        if self.val_ids:
            val_images, val_segs = validation_patches(self.shard_dir, self.val_ids, plan.patch_size,
                                                      s.validation_patches, s.seed, slice_axis=plan.slice_axis)
        writer = tf.summary.create_file_writer(str(self.out_dir / "tensorboard"))
        machine = {**machine_info(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()),
                   "gpus": len(tf.config.list_physical_devices("GPU")), "replicas": self.replicas}

        batches = self._run_batches(int(self.epoch.numpy()))
        for epoch in range(int(self.epoch.numpy()), s.epochs):
            lr = learning_rate(s.scheduler, s.learning_rate, epoch, s.epochs, s.warmup_epochs)
            self.optimizer.learning_rate.assign(lr)
            keras.utils.set_random_seed(epoch_seed(s.seed, epoch))  # any other randomness (Python, NumPy, TF)
            start, losses = time.perf_counter(), []
            bar = tqdm(range(s.steps_per_epoch), desc=f"epoch {epoch + 1}/{s.epochs}", unit="step", leave=False,
                       mininterval=1.0)
            for _ in bar:
                losses.append(float(train_step(next(batches))))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            elapsed = time.perf_counter() - start
            row = {"epoch": epoch, "loss": float(np.mean(losses)), "learning_rate": lr, "epoch_time_s": elapsed,
                   "patches_per_s": s.steps_per_epoch * global_batch / elapsed,
                   "runtime": {**machine, "xla": train_step.xla_status()}}
            if self.val_ids:
                row.update(self._validation_row(predict, val_images, val_segs))
            rows.append(row)
            # Log first: a resume drops rows of epochs the checkpoint does not hold, never the reverse.
            self._write_log(rows)
            self.epoch.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)
            with writer.as_default(step=epoch):
                for key in ("loss", "val_dice_mean", "ema_val_dice", "learning_rate", "patches_per_s",
                            "epoch_time_s"):
                    if key in row:
                        tf.summary.scalar(key, row[key])
                for name, value in row.get("val_dice", {}).items():
                    tf.summary.scalar(f"val_dice/{name}", value)
            writer.flush()  # a killed run keeps the events of the epochs its checkpoint holds
            validation = (", val Dice " + ", ".join(f"{n} {v:.3f}" for n, v in row["val_dice"].items())
                          + f", EMA {row['ema_val_dice']:.3f}") if self.val_ids else ""
            print(f"epoch {epoch + 1}/{s.epochs}: loss {row['loss']:.4f}{validation}, "
                  f"{row['patches_per_s']:.1f} patches/s", flush=True)
        writer.close()
        if not self.val_ids:  # nothing to choose the best epoch by: the best is the last
            self._save_weights(self.out_dir / "checkpoints" / "best.weights.h5")
        return rows

    def _validation_row(self, predict, images, segs) -> dict:
        """The epoch's validation pseudo Dice, its mean and EMA; saves the best checkpoint on a
        new best EMA."""
        dice = self._validate(predict, images, segs)
        mean_dice = float(np.mean(list(dice.values())))
        ema = mean_dice if self.ema.numpy() < 0 else EMA_DECAY * float(self.ema.numpy()) + (1 - EMA_DECAY) * mean_dice
        self.ema.assign(ema)
        if ema > float(self.best_ema.numpy()):
            self.best_ema.assign(ema)
            self._save_weights(self.out_dir / "checkpoints" / "best.weights.h5")
        return {"val_dice": dice, "val_dice_mean": mean_dice, "ema_val_dice": ema}

    def _run_batches(self, first_epoch: int):
        """The batches of epochs `first_epoch`.. to the end, from one input pipeline; an epoch's
        patches are a function of (seed, epoch) only, so a run resumed at `first_epoch` draws the
        same patches, in the same order, as one that was never interrupted."""
        s, plan = self.settings, self.plan
        seeds = [epoch_seed(s.seed, epoch) for epoch in range(first_epoch, s.epochs)]
        memory_bytes = s.input_memory_mb * 2**20 if s.input_memory_mb else None
        # The distribution sizes the batches (global or per process) and offsets each process's seeds.
        return self.distribution.batches(
            lambda batch, offset: training_epochs(self.shard_dir, self.train_ids, plan.patch_size, batch,
                                                  s.oversampling, [seed + offset for seed in seeds],
                                                  s.steps_per_epoch, s.augment, elastic=s.elastic,
                                                  memory_bytes=memory_bytes, mask_channels=plan.mask_channels,
                                                  oversampling_rule=s.oversampling_rule,
                                                  patches_per_case=s.patches_per_case,
                                                  replica_batch_size=plan.batch_size, slice_axis=plan.slice_axis,
                                                  previous_channels=plan.input_channels - plan.num_channels),
            plan.batch_size, 0)

    def _save_weights(self, path: Path) -> None:
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)

    def _write_log(self, rows: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        for path in (self._history_path, self.out_dir / "training_log.jsonl"):
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, suffix=".jsonl") as tmp:
                tmp.write_text(text)

    def save_model(self, path: str | Path) -> None:
        with atomic_path(path, suffix=".keras") as tmp:
            self.objective.inference_model(self.model).save(tmp)

    def save_best_model(self, path: str | Path) -> None:
        """Save the best epoch's weights as a prediction model (after `save_model`: this replaces
        the trained weights in memory)."""
        # Also a file from before the network had its own instance normalization (a resumed run).
        load_weights(self.model, self.out_dir / "checkpoints" / "best.weights.h5")
        self.save_model(path)


def check_shards(shard_dir: str | Path, plan: Plan) -> None:
    """The shards' images must have the channels the plan's network takes: a cascade's with the
    previous stage's, any other's without (shards that do not record it are not checked)."""
    channels = shard_channels(shard_dir)
    if channels is None or channels == plan.input_channels:
        return
    extra = plan.input_channels - plan.num_channels
    what = f"{plan.num_channels} image + {extra} previous stage ({plan.previous_stage})" if extra else "the image's only"
    raise ValueError(f"{Path(shard_dir) / INDEX}: the shards' images have {channels} channels, but the "
                     f"{plan.configuration} network takes {plan.input_channels} ({what}); write the shards "
                     f"for this configuration" + (" with its previous stage" if plan.previous_stage else ""))


def train_fold(plan: Plan, settings: TrainSettings, shard_dir, train_ids, val_ids, out_dir,
               model_path, curves_path=None, best_model_path=None) -> list[dict]:
    """Train one fold and write the final model, the best model (with `best_model_path`), the
    training log and the curves PNG."""
    trainer = FoldTrainer(plan, settings, shard_dir, train_ids, val_ids, out_dir)
    rows = trainer.run()
    trainer.save_model(model_path)
    if best_model_path:
        trainer.save_best_model(best_model_path)
    if curves_path:
        plot_training_curves(rows, curves_path)
    return rows
