"""The network's shape for a patch: downsampling strides and kernel sizes per level, filters per level.

As nnU-Net v2's get_pool_and_conv_props; any number of spatial axes. 3D networks pool each axis at
most MAX_POOLS times; 2D networks (`max_pools=None`) as often as the patch allows, as nnU-Net
(a 512 x 512 slice gets seven pools).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MAX_POOLS = 6              # downsamplings at most per axis (nnU-Net v2 reaches 6 in-plane, e.g. prostate)
MIN_FEATURE_SIZE = 4       # smallest feature map edge in the bottleneck
BASE_FILTERS = 32
MAX_FILTERS = 320


def topology(patch_size: Sequence[int], spacing: Sequence[float], max_pools: int | None = MAX_POOLS):
    """Per-level strides and kernels, and the patch size padded up to a multiple of the total stride.

    As nnU-Net v2's get_pool_and_conv_props: an axis is downsampled while its feature map is
    >= 2 * MIN_FEATURE_SIZE and its spacing is within 2x of the finest such axis (a lone axis
    needs 3 * MIN_FEATURE_SIZE), at most MAX_POOLS times. Kernels are 1 along an axis over 2x
    coarser than the finest until the others catch up, then 3 for good; the bottleneck is all 3.
    `max_pools` None: no limit.
    """
    dim = len(patch_size)
    max_pools = math.inf if max_pools is None else max_pools
    size = [float(p) for p in patch_size]
    current = [float(s) for s in spacing]
    pools = [0] * dim
    kernel = [1] * dim
    strides, kernels = [(1,) * dim], []
    while True:
        valid = [a for a in range(dim) if size[a] >= 2 * MIN_FEATURE_SIZE and pools[a] < max_pools]
        if not valid:
            break
        finest = min(current[a] for a in valid)
        valid = [a for a in valid if current[a] / finest < 2]
        if len(valid) == 1 and size[valid[0]] < 3 * MIN_FEATURE_SIZE:
            break
        kernel = [3 if k == 3 or current[a] / min(current) < 2 else 1 for a, k in enumerate(kernel)]
        kernels.append(tuple(kernel))
        step = tuple(2 if a in valid else 1 for a in range(dim))
        for a in valid:
            pools[a] += 1
            current[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        strides.append(step)
    kernels.append((3,) * dim)
    total = [2 ** p for p in pools]
    patch = tuple(int(math.ceil(p / t) * t) for p, t in zip(patch_size, total))
    return patch, tuple(strides), tuple(kernels)


def total_stride(strides: Sequence[Sequence[int]]) -> tuple[int, ...]:
    return tuple(int(t) for t in np.prod(np.array(strides), axis=0))


def filters_per_level(levels: int, first: int = BASE_FILTERS, cap: int = MAX_FILTERS) -> tuple[int, ...]:
    return tuple(min(first * 2 ** i, cap) for i in range(levels))
