"""Losses and validation counts (keras.ops only).

The losses take the network's logits, in float32: cross-entropy from the log-softmax (or the
log-sigmoid) keeps its gradient on a confident mistake, where log(clip(probability)) has none.
Labels: Dice + cross-entropy over classes (softmax). Regions (one sigmoid channel per region,
nnU-Net's DC_and_BCE): binary cross-entropy + soft Dice over the regions. Deep supervision: the
loss of every output against the class-index map downsampled to its resolution, weighted
(`deep_supervision_weights`). The validation counts take probabilities.

Sparse annotation (nnU-Net v2's ignore label): voxels of the class index `ignore_index` (or
outside `mask` for regions) add nothing to the cross-entropy, the Dice or the counts; the
cross-entropy is the mean over the annotated voxels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
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


def annotated(labels, ignore_index: int | None):
    """(class indices with the ignored ones set to 0, float32 mask (B, *spatial, 1) of annotated
    voxels or None without an ignore label)."""
    labels = ops.cast(labels, "int32")
    if ignore_index is None:
        return labels, None
    keep = ops.not_equal(labels, ignore_index)
    return ops.where(keep, labels, 0), ops.expand_dims(ops.cast(keep, "float32"), -1)


def _masked_mean(values, mask):
    """Mean of `values` (B, *spatial, C) over the voxels where `mask` (B, *spatial, 1) is 1; 0 if none."""
    if mask is None:
        return ops.mean(values)
    weight = ops.sum(mask) * values.shape[-1]
    return ops.sum(values * mask) / ops.maximum(weight, 1.0)


def dice_ce_loss(labels, logits, batch_dice: bool = False, ignore_index: int | None = None):
    """labels: integer class indices (B, *spatial); logits: (B, *spatial, K), softmax-activated;
    voxels of class index `ignore_index` (the ignore label, K) are left out."""
    logits = ops.cast(logits, "float32")
    labels, mask = annotated(labels, ignore_index)
    onehot = ops.one_hot(labels, logits.shape[-1], dtype="float32")
    log_probs = ops.log_softmax(logits, axis=-1)
    ce = -_masked_mean(ops.sum(onehot * log_probs, axis=-1, keepdims=True), mask)
    probs = ops.exp(log_probs)
    if mask is not None:  # nnU-Net's loss mask: the ignored voxels count in neither Dice sum
        onehot, probs = onehot * mask, probs * mask
    return ce + (1.0 - soft_dice(onehot, probs, batch_dice=batch_dice))


def region_targets(labels, membership):
    """(B, *spatial, R) float32 region masks of integer class indices `labels` (B, *spatial),
    given the (K, R) `membership`: true where class index k's label value belongs to region r
    (the transpose of `unet.inference.regions.region_membership`)."""
    return ops.take(ops.cast(ops.convert_to_tensor(membership), "float32"), ops.cast(labels, "int32"), axis=0)


def binary_cross_entropy(targets, logits):
    """Per-voxel BCE of sigmoid(logits): max(x, 0) - x t + log(1 + exp(-|x|)), finite for any x."""
    return ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


def region_dice_bce_loss(targets, logits, batch_dice: bool = False, mask=None):
    """Binary cross-entropy (mean over voxels and regions) + 1 - soft Dice over all regions.

    targets: (B, *spatial, R) region masks; logits: (B, *spatial, R), sigmoid-activated; `mask`
    (B, *spatial, 1), optional: the annotated voxels, the only ones counted."""
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    bce = _masked_mean(binary_cross_entropy(targets, logits), mask)
    probs = ops.sigmoid(logits)
    if mask is not None:
        targets, probs = targets * mask, probs * mask
    # Every region is foreground: nnU-Net's do_bg=True for region training.
    return bce + (1.0 - soft_dice(targets, probs, include_background=True, batch_dice=batch_dice))


def confusion_counts(labels, probs, num_classes: int, ignore_index: int | None = None):
    """True positives, false positives, false negatives per class (K,) of the argmax prediction,
    over the voxels whose class index is not `ignore_index`."""
    labels, mask = annotated(labels, ignore_index)
    pred = ops.one_hot(ops.argmax(probs, axis=-1), num_classes, dtype="float32")
    ref = ops.one_hot(labels, num_classes, dtype="float32")
    if mask is not None:
        pred, ref = pred * mask, ref * mask
    return _counts(pred, ref)


def region_confusion_counts(targets, probs, threshold: float = 0.5, mask=None):
    """True positives, false positives, false negatives per region (R,) of `probs > threshold`,
    over the voxels where `mask` (B, *spatial, 1), if given, is 1."""
    pred = ops.cast(ops.greater(ops.cast(probs, "float32"), threshold), "float32")
    targets = ops.cast(targets, "float32")
    if mask is not None:
        pred, targets = pred * mask, targets * mask
    return _counts(pred, targets)


def _counts(pred, ref):
    axes = tuple(range(len(pred.shape) - 1))
    tp = ops.sum(pred * ref, axis=axes)
    return tp, ops.sum(pred, axis=axes) - tp, ops.sum(ref, axis=axes) - tp


# -- deep supervision ------------------------------------------------------------------------

def deep_supervision_weights(n_outputs: int) -> np.ndarray:
    """nnU-Net's weights: halving per level (1, 1/2, 1/4, ...), the lowest-resolution output's
    set to 0, normalized to sum 1. A single output keeps weight 1."""
    if n_outputs < 1:
        raise ValueError(f"deep supervision needs at least one output, got {n_outputs}")
    weights = np.array([0.5 ** i for i in range(n_outputs)], dtype=np.float64)
    if n_outputs > 1:
        weights[-1] = 0.0
    return weights / weights.sum()


def downsample_labels(labels, stride: Sequence[int], offset: Sequence[int] | None = None):
    """Nearest-neighbour downsampling of class-index maps (B, *spatial) by strided slicing:
    voxel `offset + i * stride` for output voxel i, the input voxel the network's output voxel
    is centred on (`unet.model.network.output_offsets`; default 0)."""
    offset = (0,) * len(stride) if offset is None else offset
    if all(int(s) == 1 for s in stride) and not any(offset):
        return labels
    return labels[(slice(None),) + tuple(slice(int(o), None, int(s)) for s, o in zip(stride, offset))]


def deep_supervision_loss(loss_fn: Callable, labels, outputs: Sequence, strides: Sequence[Sequence[int]],
                          weights: Sequence[float], offsets: Sequence[Sequence[int]] | None = None):
    """sum_l weights[l] * loss_fn(labels downsampled by strides[l] from offsets[l], outputs[l]).

    Zero-weighted outputs stay in the sum (times 0), so every head's weights get a (zero)
    gradient rather than none."""
    offsets = [None] * len(strides) if offsets is None else offsets
    if not (len(outputs) == len(strides) == len(weights) == len(offsets)):
        raise ValueError(f"deep supervision: {len(outputs)} outputs, {len(strides)} strides, {len(offsets)} "
                         f"offsets and {len(weights)} weights must match")
    total = 0.0
    for output, stride, offset, weight in zip(outputs, strides, offsets, weights):
        total = total + float(weight) * loss_fn(downsample_labels(labels, stride, offset), output)
    return total
