"""The experiment plan: target spacing, patch size, topology and normalization.

`plans.json` is the single source of truth for everything after planning. It records the
planned values, the config overrides, and the effective values at its top level, which is
what `Plan.load` reads.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from unet.io.atomic import read_json
from unet.preprocessing.normalization import ChannelNormalization
from unet.preprocessing.resampling import ANISOTROPY_RATIO, shape_at_spacing

MAX_POOLS = 5              # downsamplings at most per axis
MIN_FEATURE_SIZE = 4       # smallest feature map edge in the bottleneck
BASE_FILTERS = 32
MAX_FILTERS = 320
MAX_PATCH_VOXELS = 128 ** 3
OVERRIDABLE = ("spacing", "patch_size", "batch_size", "filters", "max_filters")


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

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(sorted(self.labels))

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
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        return cls.from_json(read_json(path))


def target_spacing(spacings: np.ndarray) -> tuple[float, ...]:
    """Median spacing; for anisotropic data the coarse axis takes its 10th percentile."""
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    if target[coarse] / target.min() >= ANISOTROPY_RATIO:
        target[coarse] = np.percentile(spacings[:, coarse], 10)
    return tuple(float(s) for s in target)


def topology(patch_size: Sequence[int], spacing: Sequence[float]):
    """Per-level strides and kernels, and the patch size made divisible by the total stride.

    An axis is downsampled while its feature map stays >= 2 * MIN_FEATURE_SIZE and its spacing is
    within 2x of the finest; kernels are 1 along an axis still over 2x coarser than the finest.
    """
    size = [float(p) for p in patch_size]
    current = [float(s) for s in spacing]
    kernel = lambda sp: tuple(3 if s <= 2 * min(sp) else 1 for s in sp)  # noqa: E731
    strides, kernels = [tuple(1 for _ in size)], [kernel(current)]
    while len(strides) <= MAX_POOLS:
        step = tuple(2 if size[a] >= 2 * MIN_FEATURE_SIZE and current[a] <= 2 * min(current) else 1
                     for a in range(len(size)))
        if max(step) == 1:
            break
        size = [n / s for n, s in zip(size, step)]
        current = [sp * s for sp, s in zip(current, step)]
        strides.append(step)
        kernels.append(kernel(current))
    total = np.prod(np.array(strides), axis=0)
    patch = tuple(int(max(t, round(p / t) * t)) for p, t in zip(patch_size, total))
    return patch, tuple(strides), tuple(kernels)


def _patch_from_median(median_shape: Sequence[int]) -> tuple[int, ...]:
    patch = np.array(median_shape, dtype=float)
    while np.prod(patch) > MAX_PATCH_VOXELS:
        patch[np.argmax(patch)] *= 0.9
    return tuple(int(p) for p in patch)


def _filters(levels: int, first: int, cap: int) -> tuple[int, ...]:
    return tuple(min(first * 2 ** i, cap) for i in range(levels))


def _normalization(fingerprint: dict) -> tuple[ChannelNormalization, ...]:
    # nnU-Net: z-score inside the non-zero mask when cropping removed over a quarter of the box.
    use_mask = float(np.median([c["crop_fraction"] for c in fingerprint["cases"]])) < 0.75
    out = []
    for modality, stats in zip(fingerprint["modalities"], fingerprint["intensity"]):
        if modality.upper() == "CT":
            out.append(ChannelNormalization("ct", clip=(stats["percentile_00_5"], stats["percentile_99_5"]),
                                            mean=stats["mean"], std=stats["std"]))
        else:
            out.append(ChannelNormalization("zscore", use_mask=use_mask))
    return tuple(out)


def _derive(fingerprint: dict, overrides: dict) -> Plan:
    cases = fingerprint["cases"]
    spacings = np.array([c["spacing"] for c in cases])
    spacing = tuple(float(s) for s in overrides.get("spacing") or target_spacing(spacings))
    shapes = np.array([shape_at_spacing(c["shape_after_crop"], c["spacing"], spacing) for c in cases])
    median_shape = tuple(int(n) for n in np.median(shapes, axis=0))
    patch_request = overrides.get("patch_size") or _patch_from_median(median_shape)
    patch, strides, kernels = topology(patch_request, spacing)
    if overrides.get("patch_size") and tuple(patch) != tuple(overrides["patch_size"]):
        raise ValueError(f"config plan.patch_size {list(overrides['patch_size'])} must be divisible "
                         f"by the network's total stride per axis; nearest valid: {list(patch)}")
    filters = overrides.get("filters", BASE_FILTERS)
    if isinstance(filters, int):
        filters = _filters(len(strides), filters, overrides.get("max_filters", MAX_FILTERS))
    elif len(filters) != len(strides):
        raise ValueError(f"config plan.filters lists {len(filters)} levels, the topology has "
                         f"{len(strides)}: give one number (first level) or {len(strides)}")
    return Plan(
        dataset=fingerprint["dataset"], modalities=tuple(fingerprint["modalities"]),
        labels={int(k): v for k, v in fingerprint["labels"].items()},
        spacing=spacing, patch_size=patch, batch_size=int(overrides.get("batch_size", 2)),
        filters=tuple(int(f) for f in filters), strides=strides, kernels=kernels,
        normalization=_normalization(fingerprint), median_shape=median_shape,
    )


def make_plans(fingerprint: dict, overrides: dict[str, Any] | None = None) -> dict:
    """plans.json content: effective plan at top level, plus `planned` and `overrides`."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"config plan: unknown keys {sorted(unknown)}; allowed: {list(OVERRIDABLE)}")
    effective = _derive(fingerprint, overrides).to_json()
    return {**effective, "planned": _derive(fingerprint, {}).to_json(), "overrides": overrides}
