"""Foreground locations of a preprocessed case, for oversampling patches around foreground.

Contract of `{case}_fg.npy` (read by the shard rule): int32 (N, 4), rows (class index, x, y, z)
on the preprocessed grid, classes ascending, at most FG_SAMPLES_PER_CLASS rows per foreground
class (index >= 1) drawn without replacement; classes absent from the case have no rows; (0, 4)
when the case has no foreground. The ignore label (unannotated voxels) is no
foreground. The draw is seeded from the case id, so it is reproducible.
"""

from __future__ import annotations

import zlib

import numpy as np

FG_SAMPLES_PER_CLASS = 10000  # as nnU-Net's preprocessor


def case_seed(case_id: str) -> int:
    """A stable seed from the case id (Python's hash() of a str changes between runs)."""
    return zlib.crc32(case_id.encode("utf-8"))


def foreground_locations(seg: np.ndarray, num_classes: int, seed: int,
                         cap: int = FG_SAMPLES_PER_CLASS, ignore_index: int | None = None) -> np.ndarray:
    """Up to `cap` random voxels of each foreground class 1..num_classes-1 present in the
    (X, Y, Z) class-index map `seg`, as described in the module docstring; voxels of
    `ignore_index` are left out. Within a class the rows follow the voxels' memory order."""
    if seg.ndim != 3:
        raise ValueError(f"expected a (X, Y, Z) class-index map, got shape {seg.shape}")
    rng = np.random.default_rng(seed)
    flat = seg.reshape(-1)
    fg = np.flatnonzero(flat if ignore_index is None else (flat != 0) & (flat != ignore_index))
    values = flat[fg]
    if values.size and int(values.max()) >= num_classes:
        raise ValueError(f"class index {int(values.max())} in a map of {num_classes} classes")
    rows = [np.zeros((0, 4), np.int32)]
    for k in range(1, num_classes):
        where = fg[values == k]
        if where.size > cap:
            where = np.sort(where[rng.choice(where.size, cap, replace=False)])
        if where.size:
            xyz = np.stack(np.unravel_index(where, seg.shape), axis=1)
            rows.append(np.concatenate([np.full((where.size, 1), k), xyz], axis=1).astype(np.int32))
    return np.concatenate(rows, axis=0)
