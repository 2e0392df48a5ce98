"""The optimizer of a training, from its settings (`train.optimizer`, `momentum`, `weight_decay`).

Weight decay means what it means in PyTorch, where both reference recipes come from: for sgd and
adam an L2 penalty, `weight_decay * w` added to the gradient before the update (so SGD's momentum
and Adam's moments see it; nnU-Net's torch.optim.SGD, NVIDIA's loss term); for adamw decoupled
decay, `w -= learning_rate * weight_decay * w` beside the update (Keras' AdamW). Keras' own
`weight_decay` argument is decoupled for every optimizer, hence the two L2 classes here. The
decay applies to every trainable variable, as in nnU-Net (NVIDIA's leaves out normalization
layers).

The learning rate given here is the base rate; the loop sets each epoch's (unet.training.schedules).
"""

from __future__ import annotations

import keras
from keras import ops

from unet.training.settings import TrainSettings
from unet.training.steps import needs_loss_scaling


class _L2Penalty:
    """Adds `l2 * variable` to each gradient before the optimizer's own update."""

    l2: float = 0.0

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(ops.cast(gradient, variable.dtype),
                               ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


class L2SGD(_L2Penalty, keras.optimizers.SGD):
    """SGD with an L2 penalty in the gradient (torch.optim.SGD's `weight_decay`)."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = float(l2)


class L2Adam(_L2Penalty, keras.optimizers.Adam):
    """Adam with an L2 penalty in the gradient (torch.optim.Adam's `weight_decay`)."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = float(l2)


def make_optimizer(settings: TrainSettings) -> keras.optimizers.Optimizer:
    """The optimizer `settings` ask for (recipe resolved), in a LossScaleOptimizer under float16."""
    name, rate, decay = settings.optimizer, float(settings.learning_rate), float(settings.weight_decay)
    if name == "adam":
        opt = L2Adam(rate, l2=decay)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(rate, weight_decay=decay)
    elif name == "sgd":
        opt = L2SGD(rate, momentum=float(settings.momentum), nesterov=True, l2=decay)
    else:
        raise ValueError(f"config train.optimizer: unknown optimizer {settings.optimizer!r} (adam, adamw, sgd)")
    return keras.optimizers.LossScaleOptimizer(opt) if needs_loss_scaling(settings.amp) else opt
