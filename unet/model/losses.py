"""Dice + cross-entropy on softmax probabilities (keras.ops only)."""

from __future__ import annotations

from keras import ops

EPS = 1e-5


def soft_dice(onehot, probs, include_background: bool = False, batch_dice: bool = False):
    """Mean soft Dice over classes (and samples unless `batch_dice`), channels-last tensors."""
    spatial = tuple(range(1, len(probs.shape) - 1))
    axes = (0,) + spatial if batch_dice else spatial
    intersection = ops.sum(onehot * probs, axis=axes)
    denominator = ops.sum(onehot, axis=axes) + ops.sum(probs, axis=axes)
    dice = (2.0 * intersection + EPS) / (denominator + EPS)
    if not include_background:
        dice = dice[..., 1:]
    return ops.mean(dice)


def dice_ce_loss(labels, probs, batch_dice: bool = False):
    """labels: integer class indices (B, *spatial); probs: (B, *spatial, K) float32."""
    probs = ops.cast(probs, "float32")
    onehot = ops.one_hot(ops.cast(labels, "int32"), probs.shape[-1], dtype="float32")
    ce = -ops.mean(ops.sum(onehot * ops.log(ops.clip(probs, 1e-7, 1.0)), axis=-1))
    return ce + (1.0 - soft_dice(onehot, probs, batch_dice=batch_dice))


def confusion_counts(labels, probs, num_classes: int):
    """True positives, false positives, false negatives per class (K,) of the argmax prediction."""
    pred = ops.one_hot(ops.argmax(probs, axis=-1), num_classes, dtype="float32")
    ref = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")
    axes = tuple(range(len(pred.shape) - 1))
    tp = ops.sum(pred * ref, axis=axes)
    return tp, ops.sum(pred, axis=axes) - tp, ops.sum(ref, axis=axes) - tp
