"""What the network learns: model outputs, loss and validation counts, built from plan + settings.

The training loop only calls this interface, so the output layout (softmax over labels or
sigmoid per region, one output or deep-supervision heads) is decided in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from unet.model.losses import confusion_counts, dice_ce_loss
from unet.model.network import build_from_plan
from unet.preprocessing.planning import Plan
from unet.training.settings import TrainSettings


@dataclass(frozen=True)
class Objective:
    plan: Plan
    settings: TrainSettings

    @property
    def structure_names(self) -> list[str]:
        """Names of the structures the validation Dice is reported for, in order."""
        return [self.plan.labels[v] for v in self.plan.label_values[1:]]

    def build_model(self) -> keras.Model:
        """The training model (call inside the strategy scope)."""
        return build_from_plan(self.plan)

    def inference_model(self, model: keras.Model) -> keras.Model:
        """The model saved for prediction: one full-resolution probability output."""
        return model

    def loss(self, segs, outputs):
        """Scalar loss of a batch of class-index maps `segs` against the model's `outputs`."""
        return dice_ce_loss(segs, outputs, batch_dice=self.settings.batch_dice)

    def confusion(self, segs, outputs):
        """(tp, fp, fn), each (len(structure_names),), of one batch of inference-model outputs."""
        tp, fp, fn = confusion_counts(segs, outputs, self.plan.num_classes)
        return tp[1:], fp[1:], fn[1:]
