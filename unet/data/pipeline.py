"""Training and validation input pipelines over the shards."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from unet.data.sampling import random_mirror, random_patch
from unet.data.shards import read_cases

CACHE_LIMIT_BYTES = 4 * 2**30  # cache decoded cases in memory below this size


def _shard_bytes(shard_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(shard_dir).glob("*.tfrecord"))


def training_dataset(shard_dir: str | Path, case_ids: Sequence[str], patch_size: Sequence[int],
                     batch_size: int, oversampling: float, seed: int, augment: bool = True,
                     patches_per_case: int = 4) -> tf.data.Dataset:
    """Endless batches of (image (B, *patch, C), seg (B, *patch)) patches."""
    cases = read_cases(shard_dir, case_ids)
    if _shard_bytes(Path(shard_dir)) < CACHE_LIMIT_BYTES:
        cases = cases.cache()
    cases = cases.repeat().shuffle(max(1, len(case_ids)), seed=seed)
    patch = tuple(int(p) for p in patch_size)

    def sample(index, item):
        seed_pair = tf.stack([tf.cast(seed, tf.int64), index])
        image, seg = random_patch(item["image"], item["seg"], patch, oversampling, seed_pair)
        if augment:
            image, seg = random_mirror(image, seg, tf.stack([seed_pair[1], seed_pair[0] + 1]))
        return image, seg

    # Several patches per decoded case amortize reading a whole volume.
    patches = cases.flat_map(lambda item: tf.data.Dataset.from_tensors(item).repeat(patches_per_case))
    return (patches.enumerate()
            .map(sample, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def validation_patches(shard_dir: str | Path, case_ids: Sequence[str], patch_size: Sequence[int],
                       n_patches: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed set of validation patches (half centred on foreground), for a per-epoch pseudo Dice."""
    patch = tuple(int(p) for p in patch_size)
    per_case = max(1, -(-n_patches // max(1, len(case_ids))))
    images, segs = [], []
    for i, item in enumerate(read_cases(shard_dir, case_ids)):
        for j in range(per_case):
            img, seg = random_patch(item["image"], item["seg"], patch, 0.5,
                                    tf.constant([seed + 7919, i * 1000 + j], tf.int64))
            images.append(img.numpy())
            segs.append(seg.numpy())
    return np.stack(images)[:n_patches], np.stack(segs)[:n_patches]
