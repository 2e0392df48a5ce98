"""What the network learns: model outputs, loss and validation counts, built from plan + settings.

The training loop only calls this interface, so the output layout (softmax over labels or
sigmoid per region, one output or deep-supervision heads) is decided in one place. The training
model outputs float32 logits, which the losses take; the inference model (saved for prediction,
and the validation pseudo Dice) puts the activation on its full-resolution output.

- Labels (default): softmax over the plan's classes, Dice (background excluded) + cross-entropy.
- Regions (`regions`, resolved from `settings.regions`): one sigmoid channel per region, nnU-Net's
  DC_and_BCE (binary cross-entropy + soft Dice over all regions); targets are built from the
  class-index maps, a region being a set of label values.
- Ignore label (`plan.ignore_label`, sparse annotation): its voxels (class index
  `plan.ignore_index` in the segs) count in neither the loss nor the validation counts.
- Deep supervision (`settings.deep_supervision`): heads at every decoder resolution but the
  bottleneck's; each head's loss against the target downsampled to its resolution (the label
  of the voxel the head's voxel is centred on, `output_offsets`), weighted
  1, 1/2, 1/4, ... with the lowest-resolution head at 0, normalized to sum 1 (nnU-Net).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import ops

from unet.inference.regions import check_regions, region_membership
from unet.model.losses import (annotated, confusion_counts, deep_supervision_loss, deep_supervision_weights,
                               dice_ce_loss, region_confusion_counts, region_dice_bce_loss, region_targets)
from unet.model.network import build_from_plan, output_offsets, output_strides, probability_model
from unet.preprocessing.plan import Plan
from unet.training.settings import TrainSettings


@dataclass(frozen=True)
class Objective:
    plan: Plan
    settings: TrainSettings
    # Resolved regions ({name: [label values]}); None takes `settings.regions`, which then must not be
    # "dataset" (the workflow resolves that from dataset.json: `unet.inference.regions.trained_regions`).
    regions: dict[str, list[int]] | None = None
    _resolved: dict | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self):
        regions = self.regions if self.regions is not None else self.settings.regions
        if regions == "dataset":
            raise ValueError("config train.regions: 'dataset' must be resolved from dataset.json before "
                             "training (pass Objective(regions=...))")
        if regions is not None:
            if not isinstance(regions, dict):
                raise ValueError(f"config train.regions: expected {{name: [label values]}}, got {regions!r}")
            check_regions(regions, self.plan.label_values, where="config train.regions")
            regions = {str(name): [int(v) for v in values] for name, values in regions.items()}
        object.__setattr__(self, "_resolved", regions)

    @property
    def region_sets(self) -> dict[str, list[int]] | None:
        """The regions trained for (channel order), or None for softmax over labels."""
        return self._resolved

    @property
    def structure_names(self) -> list[str]:
        """Names of the structures the validation Dice is reported for, in order."""
        if self._resolved is not None:
            return list(self._resolved)
        return [self.plan.labels[v] for v in self.plan.label_values[1:]]

    @property
    def output_strides(self) -> list[tuple[int, ...]]:
        """Downsampling of each training output: [(1, ..)] or, with deep supervision, one per head."""
        if not self.settings.deep_supervision:
            return [(1,) * len(self.plan.strides[0])]
        return output_strides(self.plan.strides)

    @property
    def output_offsets(self) -> list[tuple[int, ...]]:
        """The input voxel each training output's first voxel is centred on (its targets' grid)."""
        if not self.settings.deep_supervision:
            return [(0,) * len(self.plan.strides[0])]
        return output_offsets(self.plan.strides, self.plan.kernels)

    @property
    def output_weights(self) -> list[float]:
        return [float(w) for w in deep_supervision_weights(len(self.output_strides))]

    @property
    def activation(self) -> str:
        return "softmax" if self._resolved is None else "sigmoid"

    def build_model(self) -> keras.Model:
        """The training model, outputting logits (call inside the strategy scope)."""
        outputs = None if self._resolved is None else len(self._resolved)
        return build_from_plan(self.plan, self.settings.deep_supervision, num_outputs=outputs,
                               activation=self.activation, logits=True)

    def inference_model(self, model: keras.Model) -> keras.Model:
        """The model saved for prediction: the full-resolution probabilities (sharing the training
        model's layers and weights)."""
        return probability_model(model, self.activation)

    def _single_loss(self, segs, logits):
        if self._resolved is None:
            return dice_ce_loss(segs, logits, batch_dice=self.settings.batch_dice, ignore_index=self.plan.ignore_index)
        targets, mask = self._targets(segs)
        return region_dice_bce_loss(targets, logits, batch_dice=self.settings.batch_dice, mask=mask)

    def _targets(self, segs):
        """Region masks of class-index maps, and the mask of annotated voxels (None without an
        ignore label)."""
        segs, mask = annotated(segs, self.plan.ignore_index)
        return region_targets(segs, region_membership(self._resolved, self.plan.label_values).T), mask

    def loss(self, segs, outputs):
        """Scalar float32 loss of a batch of class-index maps `segs` against the training model's
        `outputs` (logits)."""
        if isinstance(outputs, (list, tuple)):
            return deep_supervision_loss(self._single_loss, segs, outputs, self.output_strides,
                                         self.output_weights, self.output_offsets)
        return self._single_loss(segs, outputs)

    def confusion(self, segs, outputs):
        """(tp, fp, fn), each (len(structure_names),), of one batch of inference-model outputs."""
        if self._resolved is not None:
            targets, mask = self._targets(ops.convert_to_tensor(segs))
            return region_confusion_counts(targets, outputs, mask=mask)
        tp, fp, fn = confusion_counts(segs, outputs, self.plan.num_classes, ignore_index=self.plan.ignore_index)
        return tp[1:], fp[1:], fn[1:]
