"""The training step: mixed precision, the per-replica forward/backward pass (optionally compiled
with XLA), the all-reduce of the gradients, their clipping and the optimizer update.

Only the forward/backward pass is XLA-compiled: the all-reduce and `optimizer.apply` stay outside,
because a whole `jit_compile` step under MirroredStrategy fails (keras#19005). Where XLA cannot
compile the pass (an op without an XLA kernel on this device), the first step falls back to a
plain `tf.function` with a warning instead of failing the training.
"""

from __future__ import annotations

import logging
from typing import Callable

import keras
import tensorflow as tf

from unet.training.distribution import Distribution

log = logging.getLogger(__name__)
POLICIES = {False: "float32", True: "mixed_float16", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# What a failed XLA compilation raises when the compiled step first runs.
XLA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError)


def precision_policy(amp: bool | str) -> str:
    """The Keras dtype policy for config `train.amp` (false, true = float16, float16, bfloat16)."""
    try:
        return POLICIES[amp]
    except (KeyError, TypeError):
        raise ValueError(f"config train.amp: {amp!r} is not one of false, true, float16, bfloat16") from None


def needs_loss_scaling(amp: bool | str) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's exponent range."""
    return precision_policy(amp) == "mixed_float16"


def set_precision(amp: bool | str) -> None:
    """Set the global policy before the model is built (also back to float32: it is process-wide).
    Layers compute in float16/bfloat16 and keep float32 weights; the network's softmax head is
    float32, and the losses cast to float32."""
    keras.mixed_precision.set_global_policy(precision_policy(amp))


def clip_by_global_norm(grads, max_norm: float, optimizer: keras.optimizers.Optimizer) -> list:
    """`grads` scaled down so that their global norm is at most `max_norm` (0: as they are),
    as torch.nn.utils.clip_grad_norm_ does in nnU-Net.

    Under loss scaling the gradients are still multiplied by the loss scale here (the
    LossScaleOptimizer divides them in `apply`): the threshold is scaled alike, which clips the
    true gradients at `max_norm`. Non-finite gradients come out non-finite, and a
    LossScaleOptimizer then skips the step as it would have.
    """
    if not max_norm:
        return list(grads)
    threshold = optimizer.scale_loss(tf.constant(float(max_norm), tf.float32))
    clipped, _ = tf.clip_by_global_norm(list(grads), threshold)
    return clipped


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                    loss_fn: Callable, distribution: Distribution, jit_compile: bool = False,
                    grad_clip: float = 0.0) -> Callable:
    """`train_step(batch) -> mean loss over replicas`: one optimizer step on a batch of
    `distribution.batches`. `loss_fn(segs, outputs)` is the scalar float32 loss; `grad_clip` > 0
    clips the global norm of the averaged gradients (every replica then clips alike)."""

    @tf.function(jit_compile=jit_compile)
    def forward_backward(images, segs):
        with tf.GradientTape() as tape:
            loss = loss_fn(segs, model(images, training=True))
            # A LossScaleOptimizer multiplies by its dynamic scale; other optimizers return loss.
            scaled = optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, model.trainable_variables)

    def replica_step(images, segs):
        loss, grads = forward_backward(images, segs)
        # Clip the average, not each replica's share: the norm nnU-Net clips is the whole batch's.
        grads = clip_by_global_norm(distribution.all_reduce_mean(grads), grad_clip, optimizer)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    @tf.function
    def train_step(batch):
        return distribution.run(replica_step, batch)

    return train_step


def with_xla_fallback(make_step: Callable[[bool], Callable], xla: bool) -> Callable:
    """`make_step(jit_compile)`'s step; with `xla`, the compiled one, unless its first call fails
    to compile: then a warning, and the plain step from then on (the failed call is repeated).
    `step.xla_status()` says which: "off", "on" or "fell back".

    A compilation error is raised before the step changes any variable, so repeating is safe.
    """
    if not xla:
        step = make_step(False)
        step.xla_status = lambda: "off"
        return step
    state = {"step": make_step(True), "checked": False, "status": "on"}

    def step(batch):
        if state["checked"]:
            return state["step"](batch)
        try:
            result = state["step"](batch)
        except XLA_ERRORS as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("config train.xla: XLA could not compile the training step (%s); "
                        "training without XLA", first_line)
            state["step"] = make_step(False)
            state["status"] = "fell back"
            result = state["step"](batch)
        state["checked"] = True
        return result

    step.xla_status = lambda: state["status"]  # "on", "fell back" (recorded in the training log)
    return step
