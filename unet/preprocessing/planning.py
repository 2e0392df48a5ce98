"""The experiment plan: target spacing, patch size, batch size, topology and normalization.

`plans.json` is the single source of truth for everything after planning. It records the
planned values, the config overrides, and the effective values at its top level, which is
what `Plan.load` reads.

The rules follow nnU-Net v2's ExperimentPlanner: median target spacing (the coarse axis of
anisotropic data at its 10th percentile), a patch that starts with the aspect of the spacing,
clipped to the median shape, and shrinks along the axis most oversized relative to the median
shape until an estimate of training memory fits the GPU budget; then as many samples per batch
as fit (at least 2, at most 5% of the dataset's voxels per step).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from unet.io.atomic import read_json
from unet.preprocessing.normalization import ChannelNormalization
from unet.preprocessing.resampling import ANISOTROPY_RATIO, shape_at_spacing

MAX_POOLS = 6              # downsamplings at most per axis (nnU-Net v2 reaches 6 in-plane, e.g. prostate)
MIN_FEATURE_SIZE = 4       # smallest feature map edge in the bottleneck
BASE_FILTERS = 32
MAX_FILTERS = 320
INITIAL_PATCH_VOXELS = 256 ** 3   # the starting patch volume, before clipping to the median shape
MIN_BATCH = 2
MAX_DATASET_FRACTION = 0.05       # a batch sees at most 5% of the dataset's voxels (overfitting guard)
DEFAULT_GPU_MEMORY_GB = 16.0

# Training memory model (see `training_memory`). Each conv block keeps three tensors for the
# backward pass (conv, instance norm and LeakyReLU outputs), in float16 under mixed precision;
# every parameter costs 16 bytes (float32 weight, gradient and two Adam moments).
TENSORS_PER_CONV = 3
ACTIVATION_BYTES = 2
PARAMETER_BYTES = 16
# What the framework takes before the first tensor (CUDA context, cuDNN workspaces, allocator
# slack). Calibrated so that a BraTS-like dataset at 8 GB gets nnU-Net v2's own 128x160x112,
# batch 2: by this model that patch needs 6.02 GiB, the candidate before it (128x160x128) 6.82
# GiB, and 8 less 1.5 leaves 6.5 GiB. gpu_memory_gb counts GiB, as nvidia-smi does.
RESERVED_GB = 1.5
GIB = 2 ** 30

OVERRIDABLE = ("spacing", "patch_size", "batch_size", "filters", "max_filters", "gpu_memory_gb",
               "normalization", "use_mask")
NORMALIZATION_SCHEMES = ("ct", "zscore")


@dataclass(frozen=True)
class Plan:
    dataset: str
    modalities: tuple[str, ...]
    labels: dict[int, str]                     # label value -> name, background included
    spacing: tuple[float, ...]                 # target spacing, canonical axes
    patch_size: tuple[int, ...]
    batch_size: int
    filters: tuple[int, ...]                   # per level
    strides: tuple[tuple[int, ...], ...]       # per level; level 0 is all ones
    kernels: tuple[tuple[int, ...], ...]       # per level
    normalization: tuple[ChannelNormalization, ...]
    median_shape: tuple[int, ...] = field(default=())
    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB   # the budget the patch and batch were planned for
    memory_estimate_gb: float = 0.0                # `training_memory` of patch, batch and network, GiB

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(sorted(self.labels))

    @property
    def nonzero_mask(self) -> bool:
        """Whether normalization treats zero voxels as outside the object (z-score in the mask)."""
        return any(n.scheme == "zscore" and n.use_mask for n in self.normalization)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def num_channels(self) -> int:
        return len(self.modalities)

    def to_json(self) -> dict:
        d = asdict(self)
        d["labels"] = {str(k): v for k, v in sorted(self.labels.items())}
        d["normalization"] = [n.to_json() for n in self.normalization]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        return cls(
            dataset=d["dataset"], modalities=tuple(d["modalities"]),
            labels={int(k): v for k, v in d["labels"].items()},
            spacing=tuple(float(s) for s in d["spacing"]),
            patch_size=tuple(int(p) for p in d["patch_size"]), batch_size=int(d["batch_size"]),
            filters=tuple(int(f) for f in d["filters"]),
            strides=tuple(tuple(int(s) for s in level) for level in d["strides"]),
            kernels=tuple(tuple(int(k) for k in level) for level in d["kernels"]),
            normalization=tuple(ChannelNormalization.from_json(n) for n in d["normalization"]),
            median_shape=tuple(int(n) for n in d.get("median_shape", ())),
            gpu_memory_gb=float(d.get("gpu_memory_gb", DEFAULT_GPU_MEMORY_GB)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        return cls.from_json(read_json(path))


# --- target spacing ---------------------------------------------------------------------------

def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[float, ...]:
    """Median spacing; the coarse axis of anisotropic data takes its 10th percentile.

    As nnU-Net v2: anisotropic means the coarsest median spacing is over ANISOTROPY_RATIO times
    the next coarsest AND that axis has fewer than 1/ANISOTROPY_RATIO of the voxels of the
    smallest other axis (median shape after cropping, in the cases' own voxels). Thick-sliced
    volumes resampled to the median would interpolate too few slices; the 10th percentile keeps
    more of them, but never goes finer than the other axes.
    """
    spacings, shapes = np.asarray(spacings, dtype=float), np.asarray(shapes, dtype=float)
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != coarse]
    finest_other = max(target[a] for a in others)
    aniso_spacing = target[coarse] > ANISOTROPY_RATIO * finest_other
    aniso_voxels = median_shape[coarse] * ANISOTROPY_RATIO < min(median_shape[a] for a in others)
    if aniso_spacing and aniso_voxels:
        target[coarse] = max(float(np.percentile(spacings[:, coarse], 10)), finest_other)
    return tuple(float(s) for s in target)


# --- topology ---------------------------------------------------------------------------------

def topology(patch_size: Sequence[int], spacing: Sequence[float]):
    """Per-level strides and kernels, and the patch size padded up to a multiple of the total stride.

    As nnU-Net v2's get_pool_and_conv_props: an axis is downsampled while its feature map is
    >= 2 * MIN_FEATURE_SIZE and its spacing is within 2x of the finest such axis (a lone axis
    needs 3 * MIN_FEATURE_SIZE), at most MAX_POOLS times. Kernels are 1 along an axis over 2x
    coarser than the finest until the others catch up, then 3 for good; the bottleneck is all 3.
    """
    dim = len(patch_size)
    size = [float(p) for p in patch_size]
    current = [float(s) for s in spacing]
    pools = [0] * dim
    kernel = [1] * dim
    strides, kernels = [(1,) * dim], []
    while True:
        valid = [a for a in range(dim) if size[a] >= 2 * MIN_FEATURE_SIZE and pools[a] < MAX_POOLS]
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


# --- memory -----------------------------------------------------------------------------------

def activation_count(patch_size, strides, filters, num_channels: int, num_classes: int) -> int:
    """Activations one sample keeps for the backward pass of the planned U-Net.

    Per level with V voxels and F filters: encoder, two conv blocks (TENSORS_PER_CONV * F * V
    each); decoder (all levels but the bottleneck), the transposed conv output (F * V), the skip
    concatenation (2F * V) and two conv blocks. Plus the input, logits and softmax at full size.
    """
    voxels = np.array(patch_size, dtype=float)
    count = float(np.prod(patch_size)) * (num_channels + 2 * num_classes)
    for level, (stride, f) in enumerate(zip(strides, filters)):
        voxels = voxels / np.array(stride)
        v = float(np.prod(voxels))
        count += 2 * TENSORS_PER_CONV * f * v
        if level < len(filters) - 1:
            count += (1 + 2 + 2 * TENSORS_PER_CONV) * f * v
    return int(round(count))


def parameter_count(strides, kernels, filters, num_channels: int, num_classes: int) -> int:
    """Weights of the planned U-Net (no biases: each conv is followed by instance norm)."""
    count, previous = 0, num_channels
    for level, (kernel, f) in enumerate(zip(kernels, filters)):
        k = int(np.prod(kernel))
        count += k * (previous * f + f * f) + 4 * f          # two convs + two norms (scale, offset)
        if level < len(filters) - 1:
            up = int(np.prod(strides[level + 1]))
            count += up * filters[level + 1] * f              # transposed conv from the level below
            count += k * (2 * f * f + f * f) + 4 * f          # two decoder convs + norms
        previous = f
    return count + filters[0] * num_classes + num_classes    # 1x1 softmax head


def training_memory(patch_size, strides, kernels, filters, num_channels: int, num_classes: int,
                    batch_size: int) -> float:
    """Estimated GPU bytes to train the planned U-Net, without RESERVED_GB."""
    activations = activation_count(patch_size, strides, filters, num_channels, num_classes)
    weights = parameter_count(strides, kernels, filters, num_channels, num_classes)
    return batch_size * activations * ACTIVATION_BYTES + weights * PARAMETER_BYTES


def memory_budget(gpu_memory_gb: float) -> float:
    """Bytes available to the network's tensors on a GPU of `gpu_memory_gb` GiB."""
    return (gpu_memory_gb - RESERVED_GB) * GIB


# --- patch and batch --------------------------------------------------------------------------

def initial_patch(spacing: Sequence[float], median_shape: Sequence[int]) -> tuple[int, ...]:
    """INITIAL_PATCH_VOXELS shaped like a cube in millimetres, clipped to the median shape."""
    inverse = 1 / np.array(spacing, dtype=float)
    scaled = inverse * (INITIAL_PATCH_VOXELS / np.prod(inverse)) ** (1 / len(spacing))
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


def fit_patch(spacing, median_shape, fits) -> tuple[tuple[int, ...], tuple, tuple]:
    """The largest patch, from the initial one down, for which `fits(patch, strides, kernels)`.

    Shrinks the axis with the largest patch / median shape ratio (ties: the last such axis, as
    nnU-Net's argsort), then pads it to its new total stride.
    """
    patch, strides, kernels = topology(initial_patch(spacing, median_shape), spacing)
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


# --- normalization ----------------------------------------------------------------------------

def _normalization(fingerprint: dict, schemes: Sequence[str] | None,
                   use_mask: bool | None) -> tuple[ChannelNormalization, ...]:
    """Per channel: CT -> clip to the dataset's foreground percentiles and z-score with its
    foreground mean/std; anything else -> per-case z-score, inside the non-zero mask when
    cropping removed over a quarter of the box (nnU-Net). `schemes`/`use_mask` override."""
    modalities = fingerprint["modalities"]
    overridden = schemes is not None
    if schemes is None:
        schemes = ["ct" if m.upper() == "CT" else "zscore" for m in modalities]
    elif len(schemes) != len(modalities):
        raise ValueError(f"config plan.normalization lists {len(schemes)} schemes but the dataset has "
                         f"{len(modalities)} channels {list(modalities)}: give one per channel")
    if use_mask is None:
        use_mask = float(np.median([c["crop_fraction"] for c in fingerprint["cases"]])) < 0.75
    out = []
    for c, (scheme, modality, stats) in enumerate(zip(schemes, modalities, fingerprint["intensity"])):
        if scheme == "ct":
            if stats.get("mean") is None:
                where = "config plan.normalization: " if overridden else ""
                raise ValueError(f"{where}channel {c} ({modality}) cannot use 'ct' normalization: the "
                                 f"fingerprint has no foreground (labelled) intensities for it")
            out.append(ChannelNormalization("ct", clip=(stats["percentile_00_5"], stats["percentile_99_5"]),
                                            mean=stats["mean"], std=stats["std"]))
        elif scheme == "zscore":
            out.append(ChannelNormalization("zscore", use_mask=bool(use_mask)))
        else:
            raise ValueError(f"config plan.normalization: unknown scheme {scheme!r} for channel {c}; "
                             f"expected one of {list(NORMALIZATION_SCHEMES)}")
    return tuple(out)


# --- the plan ---------------------------------------------------------------------------------

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


def _derive(fingerprint: dict, overrides: dict) -> Plan:
    cases = fingerprint["cases"]
    spacings = np.array([c["spacing"] for c in cases], dtype=float)
    crop_shapes = np.array([c["shape_after_crop"] for c in cases], dtype=float)
    spacing = tuple(float(s) for s in overrides.get("spacing") or target_spacing(spacings, crop_shapes))
    shapes = np.array([shape_at_spacing(c["shape_after_crop"], c["spacing"], spacing) for c in cases])
    median_shape = tuple(int(n) for n in np.median(shapes, axis=0))
    n_channels, n_classes = len(fingerprint["modalities"]), len(fingerprint["labels"])
    gpu_gb = float(overrides.get("gpu_memory_gb", DEFAULT_GPU_MEMORY_GB))
    budget = memory_budget(gpu_gb)
    first, cap = overrides.get("filters", BASE_FILTERS), overrides.get("max_filters", MAX_FILTERS)

    def network_filters(levels: int, strict: bool = True) -> tuple[int, ...]:
        if isinstance(first, int):
            return filters_per_level(levels, first, cap)
        if not strict:  # while the patch is searched, candidate depths vary: repeat the last entry
            return tuple(int(f) for f in (list(first) + [first[-1]] * levels)[:levels])
        if len(first) != levels:
            raise ValueError(f"config plan.filters lists {len(first)} levels, the topology has "
                             f"{levels}: give one number (first level) or {levels}")
        return tuple(int(f) for f in first)

    def memory(patch, strides, kernels, batch):
        return training_memory(patch, strides, kernels, network_filters(len(strides), strict=False),
                               n_channels, n_classes, batch)

    if overrides.get("patch_size"):
        _check_patch_override(overrides["patch_size"], spacing)
        patch, strides, kernels = topology(overrides["patch_size"], spacing)
    else:
        patch, strides, kernels = fit_patch(
            spacing, median_shape, lambda p, s, k: memory(p, s, k, MIN_BATCH) <= budget)
    filters = network_filters(len(strides))
    if "batch_size" in overrides:
        batch = int(overrides["batch_size"])
    else:
        fixed = memory(patch, strides, kernels, 0)
        batch = batch_size_for(patch, memory(patch, strides, kernels, 1) - fixed, fixed, budget,
                               float(np.prod(median_shape)) * len(cases))
    return Plan(
        dataset=fingerprint["dataset"], modalities=tuple(fingerprint["modalities"]),
        labels={int(k): v for k, v in fingerprint["labels"].items()},
        spacing=spacing, patch_size=tuple(int(p) for p in patch), batch_size=batch,
        filters=filters, strides=strides, kernels=kernels,
        normalization=_normalization(fingerprint, overrides.get("normalization"), overrides.get("use_mask")),
        median_shape=median_shape, gpu_memory_gb=gpu_gb,
        memory_estimate_gb=round((memory(patch, strides, kernels, batch) + RESERVED_GB * GIB) / GIB, 2),
    )


def make_plans(fingerprint: dict, overrides: dict[str, Any] | None = None) -> dict:
    """plans.json content: effective plan at top level, plus `planned` and `overrides`.

    `planned` is what the planner chooses with no config at all (a DEFAULT_GPU_MEMORY_GB GPU);
    the top level applies every override, `gpu_memory_gb` included.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"config plan: unknown keys {sorted(unknown)}; allowed: {list(OVERRIDABLE)}")
    effective = _derive(fingerprint, overrides).to_json()
    return {**effective, "planned": _derive(fingerprint, {}).to_json(), "overrides": overrides}
