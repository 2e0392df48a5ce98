"""The search for one network: patch, topology, filters and batch for data at a spacing, within a
memory budget, for any number of axes (`plan_network`).

As nnU-Net v2's ExperimentPlanner.get_plans_for_configuration: a patch that starts with the
aspect of the spacing (`Search.initial_voxels`, 256^3 in 3D, 2048^2 in 2D), clipped to the median
shape, shrinks along the axis most oversized relative to the median shape until the memory
estimate (`unet.preprocessing.memory`, one model for 2D and 3D) fits the budget with MIN_BATCH
samples; then as many samples per batch as fit, at least MIN_BATCH, at most MAX_DATASET_FRACTION
of the dataset's voxels per step (rounded as nnU-Net does). `unet.preprocessing.configurations`
feeds it each configuration's spacing and median shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from unet.preprocessing.memory import training_memory
from unet.preprocessing.topology import (BASE_FILTERS, MAX_FILTERS, MAX_POOLS, MIN_FEATURE_SIZE, filters_per_level,
                                         topology, total_stride)

MIN_BATCH = 2
MAX_DATASET_FRACTION = 0.05       # a batch sees at most ~5% of the dataset's voxels (overfitting guard)


@dataclass(frozen=True)
class Search:
    """What differs between the 3D and the 2D search: nnU-Net v2's values for each."""

    initial_voxels: int = 256 ** 3       # the starting patch volume, before clipping to the median shape
    max_filters: int = MAX_FILTERS       # filters double per level up to this
    max_pools: int | None = MAX_POOLS    # per axis; None: while the patch allows


SEARCH_3D = Search()
SEARCH_2D = Search(initial_voxels=2048 ** 2, max_filters=512, max_pools=None)


# --- patch and batch --------------------------------------------------------------------------

def initial_patch(spacing: Sequence[float], median_shape: Sequence[int],
                  voxels: int = SEARCH_3D.initial_voxels) -> tuple[int, ...]:
    """`voxels` shaped like a cube in millimetres, clipped to the median shape."""
    inverse = 1 / np.array(spacing, dtype=float)
    scaled = inverse * (voxels / np.prod(inverse)) ** (1 / len(spacing))
    return tuple(int(min(round(p), m)) for p, m in zip(scaled, median_shape))


def _shrink(patch, strides, spacing, axis: int, max_pools) -> tuple[int, ...] | None:
    """`patch` one step smaller along `axis`, or None when that axis cannot shrink further.

    The step is the total stride along `axis` of the smaller patch: stepping by the current
    stride could skip valid sizes (256 -> 192 skips 224, which has one pool less).
    """
    trial = list(patch)
    trial[axis] -= total_stride(strides)[axis]
    if trial[axis] < MIN_FEATURE_SIZE:
        return None
    smaller = list(patch)
    smaller[axis] -= total_stride(topology(trial, spacing, max_pools)[1])[axis]
    return tuple(smaller)


def fit_patch(spacing, median_shape, fits: Callable, search: Search = SEARCH_3D,
              ties: Sequence[int] | None = None) -> tuple[tuple[int, ...], tuple, tuple]:
    """The largest patch, from the initial one down, for which `fits(patch, strides, kernels)`.

    Shrinks the axis with the largest patch / median shape ratio, then pads it to its new total
    stride. Among equal ratios the axis listed last in `ties` (default: the axes in order) goes
    first, as nnU-Net's argsort over its own axis order (`nnunet_axis_order`).
    """
    rank = {a: i for i, a in enumerate(range(len(spacing)) if ties is None else ties)}
    start = initial_patch(spacing, median_shape, search.initial_voxels)
    patch, strides, kernels = topology(start, spacing, search.max_pools)
    while not fits(patch, strides, kernels):
        ratios = [p / m for p, m in zip(patch, median_shape)]
        order = sorted(range(len(patch)), key=lambda a: (ratios[a], rank[a]), reverse=True)
        for axis in order:
            smaller = _shrink(patch, strides, spacing, axis, search.max_pools)
            if smaller is not None:
                break
        else:
            raise ValueError(f"config plan.gpu_memory_gb is too small for even a {list(patch)} patch "
                             f"of this network; raise it or set plan.patch_size and plan.batch_size")
        patch, strides, kernels = topology(smaller, spacing, search.max_pools)
    return patch, strides, kernels


def batch_size_for(patch, memory_per_sample: float, fixed: float, budget: float,
                   dataset_voxels: float) -> int:
    """As many samples as fit the budget, capped at MAX_DATASET_FRACTION of the dataset (rounded
    to the nearest batch, as nnU-Net), >= MIN_BATCH."""
    fit = int((budget - fixed) // memory_per_sample) if memory_per_sample > 0 else MIN_BATCH
    cap = round(dataset_voxels * MAX_DATASET_FRACTION / float(np.prod(patch)))
    return max(MIN_BATCH, min(fit, cap))


def _check_patch_override(requested, spacing) -> None:
    patch, strides, _ = topology(requested, spacing)
    if tuple(patch) == tuple(requested):
        return
    # Suggest the nearest multiple per axis when it is itself valid, else the padded-up patch.
    t = total_stride(strides)
    nearest = tuple(max(s, int(round(p / s)) * s) for p, s in zip(requested, t))
    suggestion = nearest if topology(nearest, spacing)[0] == nearest else patch
    raise ValueError(f"config plan.patch_size {list(requested)} must be divisible by the network's "
                     f"total stride per axis {list(t)}; nearest valid: {list(suggestion)}")


def network_filters(setting: int | Sequence[int], cap: int, levels: int, strict: bool = True) -> tuple[int, ...]:
    """Filters per level from config plan.filters: the first level's (doubled per level up to
    `cap`) or one per level. While the patch is searched (`strict` False) candidate depths vary:
    a list is then cut, or its last entry repeated."""
    if isinstance(setting, int):
        return filters_per_level(levels, setting, cap)
    if not strict:
        return tuple(int(f) for f in (list(setting) + [setting[-1]] * levels)[:levels])
    if len(setting) != levels:
        raise ValueError(f"config plan.filters lists {len(setting)} levels, the topology has "
                         f"{levels}: give one number (first level) or {levels}")
    return tuple(int(f) for f in setting)


# --- one network ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    """What `plan_network` chooses: the patch, the U-Net for it, and the batch."""

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    batch_size: int
    memory_bytes: float              # `training_memory` of all of it, without the reserve


def plan_network(spacing: Sequence[float], median_shape: Sequence[int], dataset_voxels: float,
                 num_channels: int, num_classes: int, budget: float, overrides: dict,
                 search: Search = SEARCH_3D, ties: Sequence[int] | None = None) -> Network:
    """Patch, topology, filters and batch for data at `spacing` whose median shape there is
    `median_shape`, within `budget` bytes; `dataset_voxels` (the training cases' voxels at that
    spacing) caps the batch. `overrides` (config plan.patch_size, batch_size, filters,
    max_filters) take precedence; `ties` as in `fit_patch`."""
    first, cap = overrides.get("filters", BASE_FILTERS), overrides.get("max_filters", search.max_filters)

    def memory(patch, strides, kernels, batch):
        return training_memory(patch, strides, kernels, network_filters(first, cap, len(strides), strict=False),
                               num_channels, num_classes, batch)

    if overrides.get("patch_size"):
        _check_patch_override(overrides["patch_size"], spacing)
        patch, strides, kernels = topology(overrides["patch_size"], spacing)
    else:
        patch, strides, kernels = fit_patch(
            spacing, median_shape, lambda p, s, k: memory(p, s, k, MIN_BATCH) <= budget, search, ties)
    filters = network_filters(first, cap, len(strides))
    if "batch_size" in overrides:
        batch = int(overrides["batch_size"])
    else:
        fixed = memory(patch, strides, kernels, 0)
        batch = batch_size_for(patch, memory(patch, strides, kernels, 1) - fixed, fixed, budget, dataset_voxels)
    return Network(tuple(int(p) for p in patch), strides, kernels, filters, batch,
                   memory(patch, strides, kernels, batch))
