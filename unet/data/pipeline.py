"""Training and validation input pipelines over the shards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from unet.data.augmentation import AugmentSettings, augmented_patch
from unet.data.sampling import drop_slice_axis, foreground_probability, patch_start, random_patch, volume_patch
from unet.data.shards import case_bytes, read_cases

DEFAULT_MEMORY_BYTES = 8 * 2**30  # the decoded cases' budget when the job does not say
SHUFFLE_CASES = 64  # at most this many decoded cases in the shuffle buffer
# Cases in flight besides the buffer: the one being cut into patches and those tf.data decodes ahead.
CASES_IN_FLIGHT = 4
BORDER = 1  # zero layers around each cached case: rotated patches read them instead of masking


@dataclass(frozen=True)
class CaseBuffers:
    cache: bool          # keep every decoded case in memory after the first pass
    shuffle_cases: int   # decoded cases the shuffle buffer holds


def case_buffers(sizes: Sequence[int], memory_bytes: int | None = None) -> CaseBuffers:
    """How many decoded cases the pipeline may hold within `memory_bytes` (None: 8 GiB).

    Caching all cases costs their sum; without the cache the shuffle buffer and the cases in
    flight hold copies of the largest. A 300 MB CT case and a 4 GB job thus get a buffer of a few
    cases, not the 64 that would need 19 GB."""
    budget = DEFAULT_MEMORY_BYTES if memory_bytes is None else int(memory_bytes)
    largest = max(sizes, default=0) or 1
    if sum(sizes) + CASES_IN_FLIGHT * largest <= budget:  # the buffer then holds cached cases
        return CaseBuffers(cache=True, shuffle_cases=max(1, min(len(sizes), SHUFFLE_CASES)))
    fit = budget // largest - CASES_IN_FLIGHT
    return CaseBuffers(cache=False, shuffle_cases=int(max(1, min(len(sizes), SHUFFLE_CASES, fit))))


def _with_border(item):
    pad = [[BORDER, BORDER]] * 3
    return {**item, "image": tf.pad(item["image"], pad + [[0, 0]]), "seg": tf.pad(item["seg"], pad)}


def _with_threading(dataset: tf.data.Dataset, threads: int | None) -> tf.data.Dataset:
    options = tf.data.Options()
    # One thread per patch: patches run side by side, which beats splitting each op across cores.
    options.threading.max_intra_op_parallelism = 1
    if threads:
        options.threading.private_threadpool_size = int(threads)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


# tf.data's shuffle combines its seed with TensorFlow's global seed, and cannot take a seed tensor
# (one per epoch, below) when the global seed is 0: the pipeline fixes the global seed to this.
SHUFFLE_GLOBAL_SEED = 1


def training_epochs(shard_dir: str | Path, case_ids: Sequence[str], patch_size: Sequence[int],
                    batch_size: int, oversampling: float, epoch_seeds: Sequence[int],
                    steps_per_epoch: int | None, augment: bool = True, patches_per_case: int = 1,
                    elastic: bool = False, threads: int | None = None, memory_bytes: int | None = None,
                    mask_channels: Sequence[int] = (), oversampling_rule: str = "bernoulli",
                    replica_batch_size: int | None = None, slice_axis: int | None = None,
                    previous_channels: int = 0) -> tf.data.Dataset:
    """Batches of (image (B, *patch, C), seg (B, *patch)) patches: `steps_per_epoch` for each seed
    of `epoch_seeds` in turn (None: endless batches of the first seed). With `slice_axis` (a 2d
    plan's), 2D patches of `patch_size` (in-plane) from slices along that axis of the same 3D cases
    (unet.data.sampling.volume_patch), augmented in 2D (AugmentSettings.nnunet_2d).

    `oversampling` of the patches are centred on a recorded foreground voxel of a random present
    class, each with that probability (`oversampling_rule` bernoulli) or the last of each replica's
    batch of `replica_batch_size` (nnunet; default: `batch_size`, the whole batch is one replica's;
    unet.data.sampling.foreground_probability). `patches_per_case` consecutive patches are cut from
    one case (4: a batch of 2 comes from one case, a 2D batch of 12 from 3 cases as NVIDIA's
    `--nvol`); 1 draws a case per patch, as nnU-Net does (3D and 2d),
    which costs a decoding per patch when the cases are not cached (`case_buffers`).
    With `augment`, nnU-Net v2's augmentation (unet.data.augmentation), with elastic
    deformation if `elastic`; `mask_channels` (`Plan.mask_channels`) are set to 0 again outside
    the non-zero mask after it; a cascade's last `previous_channels` (the previous stage's one-hot
    segmentation, `unet.data.shards`) are augmented as such (`AugmentSettings.previous_channels`).
    `threads` sizes tf.data's own thread pool (default: TensorFlow's).
    Patch i of an epoch is made from (its seed, i), and its cases are shuffled with its seed alone,
    so an epoch's patches do not depend on the epochs before it (a resumed run sees the same). The
    decoded cases held in memory stay within `memory_bytes` (`case_buffers`).

    One dataset serves the whole run: the augmentation is traced once and the decoded cases are
    cached once, where a pipeline per epoch pays both (and an iterator) at every epoch.
    """
    replica_batch_size = replica_batch_size or batch_size
    if batch_size % replica_batch_size:
        raise ValueError(f"a batch of {batch_size} is not made of replica batches of {replica_batch_size}")
    buffers = case_buffers(list(case_bytes(shard_dir, case_ids).values()), memory_bytes)
    cases = read_cases(shard_dir, case_ids).map(_with_border, num_parallel_calls=tf.data.AUTOTUNE)
    if buffers.cache:
        cases = cases.cache()
    patch = volume_patch(patch_size, slice_axis)
    if not augment:
        settings = AugmentSettings.off()
    elif slice_axis is None:
        settings = AugmentSettings.nnunet(patch, elastic=elastic, mask_channels=mask_channels,
                                          previous_channels=previous_channels)
    else:
        settings = AugmentSettings.nnunet_2d(patch_size, slice_axis, elastic=elastic, mask_channels=mask_channels,
                                             previous_channels=previous_channels)

    def sample(seed, index, item):
        seeds = tf.random.experimental.stateless_split(tf.stack([seed, index]), 2)
        # A global batch holds the replicas' batches one after the other (the strategy splits it so).
        probability = foreground_probability(oversampling_rule, oversampling, index, replica_batch_size)
        start = patch_start(tf.shape(item["seg"]) - 2 * BORDER, item["fg"], patch, probability, seeds[0])
        image, seg = augmented_patch(item["image"], item["seg"], start, patch, settings, seeds[1], border=BORDER)
        return drop_slice_axis(image, seg, slice_axis)

    def epoch(seed):
        # Several patches per decoded case amortize reading a whole volume (when not cached).
        patches = (cases.repeat().shuffle(buffers.shuffle_cases, seed=seed)
                   .flat_map(lambda item: tf.data.Dataset.from_tensors(item).repeat(patches_per_case)))
        batches = (patches.enumerate()
                   .map(lambda index, item: sample(seed, index, item), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
                   .batch(batch_size, drop_remainder=True))
        return batches if steps_per_epoch is None else batches.take(steps_per_epoch)

    tf.random.set_seed(SHUFFLE_GLOBAL_SEED)
    seeds = tf.constant([int(s) for s in epoch_seeds], tf.int64)
    dataset = epoch(seeds[0]) if steps_per_epoch is None else tf.data.Dataset.from_tensor_slices(seeds).flat_map(epoch)
    return _with_threading(dataset, threads)


def training_dataset(shard_dir: str | Path, case_ids: Sequence[str], patch_size: Sequence[int],
                     batch_size: int, oversampling: float, seed: int, augment: bool = True,
                     patches_per_case: int = 1, elastic: bool = False,
                     threads: int | None = None, memory_bytes: int | None = None,
                     mask_channels: Sequence[int] = (), oversampling_rule: str = "bernoulli",
                     replica_batch_size: int | None = None, slice_axis: int | None = None,
                     previous_channels: int = 0) -> tf.data.Dataset:
    """Endless batches drawn with `seed`: what `training_epochs` gives an epoch with that seed."""
    return training_epochs(shard_dir, case_ids, patch_size, batch_size, oversampling, [seed], None, augment,
                           patches_per_case, elastic, threads, memory_bytes, mask_channels, oversampling_rule,
                           replica_batch_size, slice_axis, previous_channels)


def validation_patches(shard_dir: str | Path, case_ids: Sequence[str], patch_size: Sequence[int],
                       n_patches: int, seed: int, slice_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed set of validation patches (half centred on foreground), for a per-epoch pseudo Dice;
    2D ones from slices along `slice_axis` when given."""
    patch = tuple(int(p) for p in patch_size)
    per_case = max(1, -(-n_patches // max(1, len(case_ids))))
    images, segs = [], []
    for i, item in enumerate(read_cases(shard_dir, case_ids)):
        for j in range(per_case):
            img, seg = random_patch(item["image"], item["seg"], item["fg"], patch, 0.5,
                                    tf.constant([seed + 7919, i * 1000 + j], tf.int64), slice_axis)
            images.append(img.numpy())
            segs.append(seg.numpy())
    return np.stack(images)[:n_patches], np.stack(segs)[:n_patches]
