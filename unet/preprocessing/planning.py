"""The planner: a dataset fingerprint in, plans.json out (`make_plans`).

It composes its neighbours' answers: `spacing` (the target spacing), `topology` (strides and
kernels for a patch), `memory` (what a patch, batch and network cost on the GPU) and
`normalization` (the scheme per channel), and searches patch and batch as nnU-Net v2's
ExperimentPlanner: a patch that starts with the aspect of the spacing, clipped to the median
shape, shrinks along the axis most oversized relative to the median shape until the memory
estimate fits the GPU budget; then as many samples per batch as fit (at least 2, at most 5% of
the dataset's voxels per step).

One configuration is planned today, 3D at the target spacing (`plan_fullres`). The search
(`plan_network`) takes only a spacing, the median shape at it and the budget, for any number of
axes, so another configuration (2D, a coarser 3D) is another spacing and shape fed to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from unet.io.atomic import read_json, write_json
from unet.io.labels import ignore_value
from unet.preprocessing.memory import (DEFAULT_GPU_MEMORY_GB, memory_budget, memory_estimate_gb,
                                       training_memory)
from unet.preprocessing.normalization import choose_normalization
from unet.preprocessing.plan import Plan
from unet.preprocessing.spacing import shape_at_spacing, target_spacing
from unet.preprocessing.topology import (BASE_FILTERS, MAX_FILTERS, MIN_FEATURE_SIZE, filters_per_level,
                                         topology, total_stride)

INITIAL_PATCH_VOXELS = 256 ** 3   # the starting patch volume, before clipping to the median shape
MIN_BATCH = 2
MAX_DATASET_FRACTION = 0.05       # a batch sees at most 5% of the dataset's voxels (overfitting guard)

OVERRIDABLE = ("spacing", "patch_size", "batch_size", "filters", "max_filters", "gpu_memory_gb",
               "normalization", "use_mask")


# --- patch and batch --------------------------------------------------------------------------

def initial_patch(spacing: Sequence[float], median_shape: Sequence[int],
                  voxels: int = INITIAL_PATCH_VOXELS) -> tuple[int, ...]:
    """`voxels` shaped like a cube in millimetres, clipped to the median shape."""
    inverse = 1 / np.array(spacing, dtype=float)
    scaled = inverse * (voxels / np.prod(inverse)) ** (1 / len(spacing))
    return tuple(int(min(round(p), m)) for p, m in zip(scaled, median_shape))


def _shrink(patch, strides, spacing, axis: int) -> tuple[int, ...] | None:
    """`patch` one step smaller along `axis`, or None when that axis cannot shrink further.

    The step is the total stride along `axis` of the smaller patch: stepping by the current
    stride could skip valid sizes (256 -> 192 skips 224, which has one pool less).
    """
    trial = list(patch)
    trial[axis] -= total_stride(strides)[axis]
    if trial[axis] < MIN_FEATURE_SIZE:
        return None
    smaller = list(patch)
    smaller[axis] -= total_stride(topology(trial, spacing)[1])[axis]
    return tuple(smaller)


def fit_patch(spacing, median_shape, fits,
              initial_voxels: int = INITIAL_PATCH_VOXELS) -> tuple[tuple[int, ...], tuple, tuple]:
    """The largest patch, from the initial one down, for which `fits(patch, strides, kernels)`.

    Shrinks the axis with the largest patch / median shape ratio (ties: the last such axis, as
    nnU-Net's argsort), then pads it to its new total stride.
    """
    patch, strides, kernels = topology(initial_patch(spacing, median_shape, initial_voxels), spacing)
    while not fits(patch, strides, kernels):
        ratios = [p / m for p, m in zip(patch, median_shape)]
        order = sorted(range(len(patch)), key=lambda a: (ratios[a], a), reverse=True)
        for axis in order:
            smaller = _shrink(patch, strides, spacing, axis)
            if smaller is not None:
                break
        else:
            raise ValueError(f"config plan.gpu_memory_gb is too small for even a {list(patch)} patch "
                             f"of this network; raise it or set plan.patch_size and plan.batch_size")
        patch, strides, kernels = topology(smaller, spacing)
    return patch, strides, kernels


def batch_size_for(patch, memory_per_sample: float, fixed: float, budget: float,
                   dataset_voxels: float) -> int:
    """As many samples as fit the budget, capped at MAX_DATASET_FRACTION of the dataset, >= MIN_BATCH."""
    fit = int((budget - fixed) // memory_per_sample) if memory_per_sample > 0 else MIN_BATCH
    cap = int(dataset_voxels * MAX_DATASET_FRACTION // float(np.prod(patch)))
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


# --- one configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    """What `plan_network` chooses: the patch, the U-Net for it, and the batch."""

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    batch_size: int
    memory_bytes: float              # `training_memory` of all of it, without the reserve


def plan_network(spacing: Sequence[float], median_shape: Sequence[int], num_cases: int,
                 num_channels: int, num_classes: int, budget: float, overrides: dict) -> Network:
    """Patch, topology, filters and batch for data at `spacing` whose median shape there is
    `median_shape`, within `budget` bytes; `overrides` (config plan.*) take precedence."""
    first, cap = overrides.get("filters", BASE_FILTERS), overrides.get("max_filters", MAX_FILTERS)

    def memory(patch, strides, kernels, batch):
        return training_memory(patch, strides, kernels, network_filters(first, cap, len(strides), strict=False),
                               num_channels, num_classes, batch)

    if overrides.get("patch_size"):
        _check_patch_override(overrides["patch_size"], spacing)
        patch, strides, kernels = topology(overrides["patch_size"], spacing)
    else:
        patch, strides, kernels = fit_patch(
            spacing, median_shape, lambda p, s, k: memory(p, s, k, MIN_BATCH) <= budget)
    filters = network_filters(first, cap, len(strides))
    if "batch_size" in overrides:
        batch = int(overrides["batch_size"])
    else:
        fixed = memory(patch, strides, kernels, 0)
        batch = batch_size_for(patch, memory(patch, strides, kernels, 1) - fixed, fixed, budget,
                               float(np.prod(median_shape)) * num_cases)
    return Network(tuple(int(p) for p in patch), strides, kernels, filters, batch,
                   memory(patch, strides, kernels, batch))


def median_shape_at(cases: Sequence[dict], spacing: Sequence[float]) -> tuple[int, ...]:
    """Median over the fingerprint's `cases` of their cropped shape resampled to `spacing`."""
    shapes = np.array([shape_at_spacing(c["shape_after_crop"], c["spacing"], spacing) for c in cases])
    return tuple(int(n) for n in np.median(shapes, axis=0))


def plan_fullres(fingerprint: dict, overrides: dict) -> Plan:
    """The 3D plan at the dataset's target spacing (or config plan.spacing)."""
    cases = fingerprint["cases"]
    spacings = np.array([c["spacing"] for c in cases], dtype=float)
    crop_shapes = np.array([c["shape_after_crop"] for c in cases], dtype=float)
    spacing = tuple(float(s) for s in overrides.get("spacing") or target_spacing(spacings, crop_shapes))
    median_shape = median_shape_at(cases, spacing)
    gpu_gb = float(overrides.get("gpu_memory_gb", DEFAULT_GPU_MEMORY_GB))
    predicted = len(fingerprint["labels"]) - (ignore_value(fingerprint["labels"]) is not None)  # no ignore output
    network = plan_network(spacing, median_shape, len(cases), len(fingerprint["modalities"]),
                           predicted, memory_budget(gpu_gb), overrides)
    return Plan(
        dataset=fingerprint["dataset"], modalities=tuple(fingerprint["modalities"]),
        labels={int(k): v for k, v in fingerprint["labels"].items()},
        spacing=spacing, patch_size=network.patch_size, batch_size=network.batch_size,
        filters=network.filters, strides=network.strides, kernels=network.kernels,
        normalization=choose_normalization(fingerprint, overrides.get("normalization"),
                                           overrides.get("use_mask")),
        median_shape=median_shape, gpu_memory_gb=gpu_gb,
        memory_estimate_gb=memory_estimate_gb(network.memory_bytes),
    )


# --- plans.json -------------------------------------------------------------------------------

def make_plans(fingerprint: dict, overrides: dict[str, Any] | None = None) -> dict:
    """plans.json content: effective plan at top level, plus `planned` and `overrides`.

    `planned` is what the planner chooses with no config at all (a DEFAULT_GPU_MEMORY_GB GPU);
    the top level applies every override, `gpu_memory_gb` included.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"config plan: unknown keys {sorted(unknown)}; allowed: {list(OVERRIDABLE)}")
    effective = plan_fullres(fingerprint, overrides).to_json()
    return {**effective, "planned": plan_fullres(fingerprint, {}).to_json(), "overrides": overrides}


# What the `plan` rule's log shows of the planned and the effective plan.
SHOWN = ("spacing", "median_shape", "patch_size", "batch_size", "filters", "strides", "gpu_memory_gb",
         "memory_estimate_gb")


def write_plans(fingerprint: str | os.PathLike, out: str | os.PathLike,
                overrides: dict[str, Any] | None = None) -> dict:
    """Rule `plan`: `make_plans` from the fingerprint file with config `plan` (`overrides`),
    written to `out` (plans.json) and returned; the planned and effective choices printed."""
    plans = make_plans(read_json(fingerprint), dict(overrides or {}))
    write_json(out, plans)
    for name, plan in (("planned", plans["planned"]), ("effective", plans)):
        print(name, {k: plan[k] for k in SHOWN})
    print("overrides", plans["overrides"])
    return plans
