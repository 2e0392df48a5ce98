"""nnU-Net v2's configurations of one dataset, each a Plan: `2d` always, `3d_fullres`, and
`3d_lowres` with the `3d_cascade_fullres` that refines it where the full-resolution patch covers
too little of the median image (`plan_configurations`).

- 3d_fullres: the search (`unet.preprocessing.search`) at the target spacing and its median shape.
- 2d: the same search in 2D (`SEARCH_2D`) over slices along `slice_axis`, the coarsest axis of the
  target spacing (ties: the last axis, z), at the in-plane spacing and median shape; the batch cap
  counts the dataset's 3D voxels, as nnU-Net.
- 3d_lowres: only where the 3d_fullres patch holds less than LOWRES_THRESHOLD of the median
  shape's voxels. As nnU-Net's ExperimentPlanner.plan_experiment, the spacing grows by LOWRES_STEP
  per step (only the axes over 2x finer than the coarsest while there are such, then all axes),
  the median shape shrinks with it, and the search is redone, until the patch covers
  LOWRES_THRESHOLD of it; dropped when the median image would not be at least LOWRES_MIN_SHRINK
  times fewer voxels than at full resolution.
- 3d_cascade_fullres: 3d_fullres (nnU-Net's `inherits_from`) fed the 3d_lowres segmentation
  (`previous_stage`).

Config `plan:` keys: spacing, gpu_memory_gb, normalization and use_mask concern the dataset and
the machine and apply to every configuration (2d and 3d_lowres start from 3d_fullres' spacing).
patch_size, batch_size, filters and max_filters size one network: at the top level they apply to
3d_fullres only (and so to the cascade, which is that network); under `2d:` or `3d_lowres:` to that
configuration's network (a 2d patch has two values, in-plane). Whether 3d_lowres exists, and its
spacing, are decided by the 3d_fullres patch planned without them, as nnU-Net, which has no such
settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from unet.io.labels import ignore_value
from unet.preprocessing.memory import DEFAULT_GPU_MEMORY_GB, memory_budget, memory_estimate_gb
from unet.preprocessing.normalization import ChannelNormalization, choose_normalization
from unet.preprocessing.plan import Plan
from unet.preprocessing.search import SEARCH_2D, SEARCH_3D, Network, Search, plan_network
from unet.preprocessing.spacing import shape_at_spacing, target_spacing

LOWRES_THRESHOLD = 0.25   # 3d_lowres when the 3d_fullres patch holds less of the median image's voxels
LOWRES_STEP = 1.03        # the lowres spacing's growth per step
LOWRES_MIN_SHRINK = 2     # ... and kept only when the median image has at least 2x fewer voxels
NETWORK_OVERRIDES = ("patch_size", "batch_size", "filters", "max_filters")  # one network's
SIZED_SEPARATELY = ("2d", "3d_lowres")  # configurations with their own NETWORK_OVERRIDES in config `plan:`


def median_shape_at(cases: Sequence[dict], spacing: Sequence[float]) -> tuple[int, ...]:
    """Median over the fingerprint's `cases` of their cropped shape resampled to `spacing`."""
    shapes = np.array([shape_at_spacing(c["shape_after_crop"], c["spacing"], spacing) for c in cases])
    return tuple(int(n) for n in np.median(shapes, axis=0))


def slice_axis(spacing: Sequence[float]) -> int:
    """The axis 2d slices along: the coarsest (nnU-Net's transpose_forward puts it first; its
    ties go to its first axis, which is our last)."""
    return max(range(len(spacing)), key=lambda a: (spacing[a], a))


def nnunet_axis_order(spacing: Sequence[float]) -> tuple[int, ...]:
    """Our axes in the order nnU-Net v2 holds them after transpose_forward: the slice axis, then
    the others reversed (its axes are ours reversed). Its patch search breaks ties by it."""
    axis = slice_axis(spacing)
    return (axis,) + tuple(a for a in reversed(range(len(spacing))) if a != axis)


def in_plane(values: Sequence, axis: int) -> tuple:
    """Per-axis `values` without `axis`: a 2d plan's axes, in canonical order."""
    return tuple(v for a, v in enumerate(values) if a != axis)


@dataclass(frozen=True)
class Planner:
    """What every configuration of a dataset shares: the fingerprint, the 3d_fullres spacing and
    median shape, the GPU budget and the normalization (config overrides applied)."""

    fingerprint: dict
    spacing: tuple[float, ...]
    median_shape: tuple[int, ...]
    gpu_memory_gb: float
    normalization: tuple[ChannelNormalization, ...]

    @classmethod
    def of(cls, fingerprint: dict, overrides: dict) -> "Planner":
        cases = fingerprint["cases"]
        spacings = np.array([c["spacing"] for c in cases], dtype=float)
        crop_shapes = np.array([c["shape_after_crop"] for c in cases], dtype=float)
        spacing = tuple(float(s) for s in overrides.get("spacing") or target_spacing(spacings, crop_shapes))
        normalization = choose_normalization(fingerprint, overrides.get("normalization"), overrides.get("use_mask"))
        return cls(fingerprint, spacing, median_shape_at(cases, spacing),
                   float(overrides.get("gpu_memory_gb", DEFAULT_GPU_MEMORY_GB)), normalization)

    @property
    def num_cases(self) -> int:
        return len(self.fingerprint["cases"])

    @property
    def voxels(self) -> float:
        """The training cases' voxels at the 3d_fullres spacing (median shape x cases)."""
        return float(np.prod(self.median_shape, dtype=np.float64)) * self.num_cases

    def network(self, spacing, median_shape, dataset_voxels: float, overrides: dict,
                search: Search = SEARCH_3D) -> Network:
        """`plan_network` for this dataset; ties broken in nnU-Net's axis order (3D: that of the
        3d_fullres spacing, as nnU-Net transposes once; 2d: the in-plane axes reversed)."""
        labels = self.fingerprint["labels"]
        predicted = len(labels) - (ignore_value(labels) is not None)  # no output for the ignore label
        ties = nnunet_axis_order(self.spacing) if len(spacing) == 3 else tuple(reversed(range(len(spacing))))
        return plan_network(spacing, median_shape, dataset_voxels, len(self.fingerprint["modalities"]),
                            predicted, memory_budget(self.gpu_memory_gb), overrides, search, ties)

    def plan(self, configuration: str, spacing, median_shape, network: Network, **extra) -> Plan:
        fp = self.fingerprint
        return Plan(
            dataset=fp["dataset"], modalities=tuple(fp["modalities"]),
            labels={int(k): v for k, v in fp["labels"].items()},
            spacing=tuple(float(s) for s in spacing), patch_size=network.patch_size,
            batch_size=network.batch_size, filters=network.filters, strides=network.strides,
            kernels=network.kernels, normalization=self.normalization,
            median_shape=tuple(int(n) for n in median_shape), gpu_memory_gb=self.gpu_memory_gb,
            memory_estimate_gb=memory_estimate_gb(network.memory_bytes), configuration=configuration, **extra)


# --- the configurations -----------------------------------------------------------------------

def network_overrides(overrides: dict) -> dict:
    """The NETWORK_OVERRIDES of `overrides` (config `plan:`, or its `2d:`/`3d_lowres:` section)."""
    return {k: overrides[k] for k in NETWORK_OVERRIDES if k in overrides}


def plan_fullres(planner: Planner, overrides: dict) -> Plan:
    """3D at the target spacing; `overrides` may size its network (NETWORK_OVERRIDES)."""
    network = planner.network(planner.spacing, planner.median_shape, planner.voxels, network_overrides(overrides))
    return planner.plan("3d_fullres", planner.spacing, planner.median_shape, network)


def plan_2d(planner: Planner, overrides: dict | None = None) -> Plan:
    """2D over slices along `slice_axis` of the 3d_fullres spacing; `overrides` size its network."""
    axis = slice_axis(planner.spacing)
    spacing, median = in_plane(planner.spacing, axis), in_plane(planner.median_shape, axis)
    network = planner.network(spacing, median, planner.voxels, network_overrides(overrides or {}), SEARCH_2D)
    return planner.plan("2d", spacing, median, network, slice_axis=axis)


def plan_lowres(planner: Planner, fullres_patch: Sequence[int], overrides: dict | None = None) -> Plan | None:
    """3D at a coarser spacing when `fullres_patch` covers less than LOWRES_THRESHOLD of the
    median shape, else None (see the module's docstring); `overrides` size its network once the
    spacing is found."""
    fullres, shape = np.array(planner.spacing), np.array(planner.median_shape, dtype=float)
    spacing = fullres.copy()
    median_voxels = float(np.prod(shape))
    patch_voxels = float(np.prod(fullres_patch, dtype=np.float64))
    network = median = None
    while patch_voxels / median_voxels < LOWRES_THRESHOLD:
        finer = spacing.max() / spacing > 2
        if finer.any():
            spacing[finer] *= LOWRES_STEP
        else:
            spacing *= LOWRES_STEP
        scaled = fullres / spacing * shape
        median_voxels = float(np.prod(scaled))
        median = tuple(round(float(n)) for n in scaled)
        network = planner.network(tuple(float(s) for s in spacing), median,
                                  median_voxels * planner.num_cases, {})
        patch_voxels = float(np.prod(network.patch_size, dtype=np.float64))
    if network is None or np.prod(shape) / median_voxels < LOWRES_MIN_SHRINK:
        return None
    if overrides:
        network = planner.network(tuple(float(s) for s in spacing), median, median_voxels * planner.num_cases,
                                  network_overrides(overrides))
    return planner.plan("3d_lowres", spacing, median, network)


def plan_configurations(fingerprint: dict, overrides: dict) -> dict[str, Plan]:
    """Every configuration nnU-Net v2 plans for the dataset, by name: 2d, 3d_fullres and, where
    planned, 3d_lowres and 3d_cascade_fullres; `overrides` are config `plan:`."""
    planner = Planner.of(fingerprint, overrides)
    fullres = plan_fullres(planner, overrides)
    sized = any(k in overrides for k in NETWORK_OVERRIDES)
    lowres = plan_lowres(planner, (plan_fullres(planner, {}) if sized else fullres).patch_size,
                         overrides.get("3d_lowres"))
    plans = {"2d": plan_2d(planner, overrides.get("2d")), "3d_fullres": fullres}
    if lowres is not None:
        plans["3d_lowres"] = lowres
        plans["3d_cascade_fullres"] = dataclasses.replace(fullres, configuration="3d_cascade_fullres",
                                                          previous_stage="3d_lowres")
    return plans
