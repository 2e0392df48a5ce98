"""The experiment plan: the small read-only object every stage after planning takes its sizes from.

`plans.json` is the single source of truth for everything after planning. Its top level is the
3d_fullres plan (effective values, config overrides applied), and under `configurations` the
other configurations planned for the dataset (`unet.preprocessing.configurations`): `2d` always,
`3d_lowres` and `3d_cascade_fullres` where planned; `planned` holds the same without overrides,
`overrides` the config's `plan:`. `Plan.load(path, configuration)` reads one configuration
(default 3d_fullres, the top level); `configuration_names` lists them.
`unet.preprocessing.planning` writes it.

Axes: a 3D plan's per-axis values (spacing, median_shape, patch_size, strides, kernels) are in
canonical order (x, y, z). A 2d plan's are along the in-plane axes only, the canonical axes other
than `slice_axis`, in canonical order (two values each); the network sees slices taken along
`slice_axis`, the coarsest axis of the 3d_fullres spacing (ties: z). nnU-Net v2 slices along its
first axis after transpose_forward, which is that axis (its axes are ours reversed, so its tie
break toward its first axis is ours toward z). nnU-Net resamples its 2d data in-plane only (each
case keeps its own slice spacing); the plan leaves that choice to preprocessing. A
3d_cascade_fullres plan is the 3d_fullres network taking `previous_stage`'s (3d_lowres)
segmentation as extra input: `input_channels` counts them.

`labels` holds every label of dataset.json, an "ignore" label too (`unet.io.labels`);
`label_values` and `num_classes` are those the network predicts, without it. The preprocessed
seg holds the class indices of `seg_label_values`, where the ignore label is `ignore_index`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from unet.io.atomic import read_json
from unet.io.labels import ignore_value
from unet.preprocessing.memory import DEFAULT_GPU_MEMORY_GB
from unet.preprocessing.normalization import ChannelNormalization

FULLRES = "3d_fullres"
CONFIGURATIONS = ("2d", FULLRES, "3d_lowres", "3d_cascade_fullres")  # nnU-Net v2's names, in this order


@dataclass(frozen=True)
class Plan:
    dataset: str
    modalities: tuple[str, ...]
    labels: dict[int, str]                     # label value -> name, background (and "ignore") included
    spacing: tuple[float, ...]                 # target spacing, canonical axes
    patch_size: tuple[int, ...]
    batch_size: int
    filters: tuple[int, ...]                   # per level
    strides: tuple[tuple[int, ...], ...]       # per level; level 0 is all ones
    kernels: tuple[tuple[int, ...], ...]       # per level
    normalization: tuple[ChannelNormalization, ...]
    median_shape: tuple[int, ...] = field(default=())
    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB   # the budget the patch and batch were planned for
    memory_estimate_gb: float = 0.0                # `unet.preprocessing.memory` of patch, batch and network, GiB
    configuration: str = "3d_fullres"              # one of CONFIGURATIONS
    slice_axis: int | None = None                  # 2d: the canonical axis slices are taken along
    previous_stage: str | None = None              # 3d_cascade_fullres: the configuration it refines

    @property
    def ignore_label(self) -> int | None:
        """The value of the label named "ignore" (unannotated voxels), or None."""
        return ignore_value(self.labels)

    @property
    def label_values(self) -> tuple[int, ...]:
        """The label values the network predicts, background first: all but the ignore label."""
        return tuple(v for v in sorted(self.labels) if v != self.ignore_label)

    @property
    def seg_label_values(self) -> tuple[int, ...]:
        """The label values of the preprocessed seg's class indices: the ignore label last."""
        return self.label_values + (() if self.ignore_label is None else (self.ignore_label,))

    @property
    def ignore_index(self) -> int | None:
        """The ignore label's class index in the preprocessed seg (= num_classes), or None."""
        return None if self.ignore_label is None else self.num_classes

    @property
    def mask_channels(self) -> tuple[int, ...]:
        """The channels z-scored inside the non-zero mask (0 outside it)."""
        return tuple(c for c, n in enumerate(self.normalization) if n.scheme == "zscore" and n.use_mask)

    @property
    def nonzero_mask(self) -> bool:
        """Whether normalization treats zero voxels as outside the object (z-score in the mask)."""
        return bool(self.mask_channels)

    @property
    def num_classes(self) -> int:
        """Classes the network predicts (its output channels without regions)."""
        return len(self.label_values)

    @property
    def num_channels(self) -> int:
        """The image's channels (modalities)."""
        return len(self.modalities)

    @property
    def input_channels(self) -> int:
        """The network's input channels: the image's, and for a cascade the previous stage's
        segmentation as one-hot channels of the foreground classes (`unet.preprocessing.cascade`)."""
        return self.num_channels + (self.num_classes - 1 if self.previous_stage else 0)

    @property
    def spatial_dims(self) -> int:
        """3, or 2 for a 2d plan."""
        return len(self.patch_size)

    @property
    def in_plane_axes(self) -> tuple[int, ...]:
        """The canonical axes of the volume a 2d plan's per-axis values are along (all for 3D)."""
        return tuple(a for a in range(3) if a != self.slice_axis)

    def to_json(self) -> dict:
        d = asdict(self)
        d["labels"] = {str(k): v for k, v in sorted(self.labels.items())}
        d["normalization"] = [n.to_json() for n in self.normalization]
        d["ignore_label"] = self.ignore_label  # recorded for readers; derived from labels on load
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
            configuration=d.get("configuration", FULLRES),
            slice_axis=None if d.get("slice_axis") is None else int(d["slice_axis"]),
            previous_stage=d.get("previous_stage"),
        )

    @classmethod
    def from_plans(cls, plans: dict, configuration: str = FULLRES, source: str = "plans.json") -> "Plan":
        """One configuration of plans.json's content (3d_fullres: its top level); `source` names
        the file in the error for a configuration that was not planned."""
        if configuration == FULLRES:
            return cls.from_json(plans)
        if configuration not in plans.get("configurations", {}):
            raise ValueError(f"{source}: configuration {configuration!r} is not planned for this dataset; "
                             f"planned: {list(configuration_names(plans))}")
        return cls.from_json(plans["configurations"][configuration])

    @classmethod
    def load(cls, path: str | os.PathLike, configuration: str = FULLRES) -> "Plan":
        """Configuration `configuration` of the plans.json at `path`."""
        return cls.from_plans(read_json(path), configuration, str(path))


def configuration_names(plans: dict) -> tuple[str, ...]:
    """The configurations plans.json's content holds, in CONFIGURATIONS order."""
    held = {FULLRES, *plans.get("configurations", {})}
    return tuple(c for c in CONFIGURATIONS if c in held)
