"""A U-Net built from the plan's per-level lists (filters, strides, kernels).

Each level: two conv -> instance norm -> LeakyReLU blocks, the first strided to downsample.
Convolution kernels start He-normal for the LeakyReLU (nnU-Net's InitWeights_He), biases at 0.
Up path: transposed convolution, skip concatenation, two blocks. The head is a 1x1 convolution
whose logits are cast to float32 (so mixed precision keeps the loss in full precision), then a
softmax over the classes, or a sigmoid per channel for region-based training. Training takes
the logits (`logits=True`: the losses work from them, stable where a probability underflows);
prediction takes the probabilities (`probability_model` puts the activation back on top).

With deep supervision (nnU-Net's) every decoder level also gets a head: outputs at every
resolution but the bottleneck's, full resolution first.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import layers

from unet.model.instance_norm import InstanceNormalization

ACTIVATIONS = ("softmax", "sigmoid")
NEGATIVE_SLOPE = 0.01  # of the LeakyReLU after every convolution


def _he_normal():
    """nnU-Net's InitWeights_He: normal, std = gain / sqrt(fan_in), gain sqrt(2 / (1 + slope^2))
    for the LeakyReLU that follows; every convolution, transposed ones and the heads included."""
    return keras.initializers.VarianceScaling(scale=2.0 / (1.0 + NEGATIVE_SLOPE ** 2), mode="fan_in",
                                              distribution="untruncated_normal")


def _conv_layer(dim: int):
    return layers.Conv3D if dim == 3 else layers.Conv2D


def _transpose_layer(dim: int):
    return layers.Conv3DTranspose if dim == 3 else layers.Conv2DTranspose


def _block(x, filters: int, kernel, stride, name: str):
    x = _conv_layer(len(kernel))(filters, kernel, strides=stride, padding="same", use_bias=False,
                                 kernel_initializer=_he_normal(), name=f"{name}_conv")(x)
    x = InstanceNormalization(epsilon=1e-5, name=f"{name}_norm")(x)
    return layers.LeakyReLU(negative_slope=NEGATIVE_SLOPE, name=f"{name}_act")(x)


def _head(x, num_outputs: int, activation: str, level: int, logits: bool):
    """1x1 convolution, float32 logits, and unless `logits` the activation; level 0's layers
    keep the names saved models have."""
    suffix = "" if level == 0 else f"_ds{level}"
    x = _conv_layer(len(x.shape) - 2)(num_outputs, 1, kernel_initializer=_he_normal(), name=f"head{suffix}")(x)
    x = layers.Activation("linear", dtype="float32", name=f"logits{suffix}")(x)
    if logits:
        return x
    return layers.Activation(activation, dtype="float32", name=f"probabilities{suffix}")(x)


def probability_model(model: keras.Model, activation: str = "softmax") -> keras.Model:
    """A model of `model`'s first (full-resolution) output of logits through `activation`,
    sharing its layers and weights: what is saved for prediction."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    probabilities = layers.Activation(activation, dtype="float32", name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs[0], probabilities, name=model.name)


def output_strides(strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Cumulative stride of each deep-supervision output relative to the input: level 0 (full
    resolution) to the level above the bottleneck."""
    cumulative = np.cumprod(np.asarray(strides, dtype=int), axis=0)[:-1]
    return [tuple(int(s) for s in level) for level in cumulative]


def output_offsets(strides: Sequence[Sequence[int]], kernels: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """The input voxel each deep-supervision output's voxel 0 is centred on, per axis, level 0
    (full resolution) to the level above the bottleneck: output voxel i of level l sits on input
    voxel offset + i * stride (`output_strides`).

    Keras' "same" padding, as TensorFlow's and JAX's, pads the larger half at the end: a
    stride-2 kernel-3 convolution of an even size centres output i on input 2i + 1, not 2i.
    Each level's first convolution is the strided one; the others keep the grid.
    """
    offsets, cumulative = [(0,) * len(strides[0])], [1] * len(strides[0])
    for stride, kernel in zip(strides[1:-1], kernels[1:-1]):
        previous = offsets[-1]
        offsets.append(tuple(o + c * _same_padding_shift(int(k), int(s))
                             for o, c, k, s in zip(previous, cumulative, kernel, stride)))
        cumulative = [c * int(s) for c, s in zip(cumulative, stride)]
    return offsets[:len(strides) - 1]  # as output_strides: none for a network without a decoder


def _same_padding_shift(kernel: int, stride: int) -> int:
    """Input voxel that output voxel 0 of a "same" convolution is centred on, for an input size
    divisible by the stride: (kernel - 1) / 2 minus the padding before, max(kernel - stride, 0) // 2."""
    return (kernel - 1) // 2 - max(kernel - stride, 0) // 2


def build_unet(num_channels: int, num_outputs: int, filters: Sequence[int],
               strides: Sequence[Sequence[int]], kernels: Sequence[Sequence[int]],
               deep_supervision: bool = False, activation: str = "softmax",
               name: str = "unet", logits: bool = False) -> keras.Model:
    """Functional U-Net; the input's spatial size is left open so whole volumes or patches fit.

    One (B, *spatial, num_outputs) output, or with `deep_supervision` a list of one per decoder
    level, full resolution first, level l downsampled by `output_strides(strides)[l]`: float32
    probabilities (`activation`), or with `logits` the float32 logits before it.
    """
    dim = len(strides[0])
    if not (len(filters) == len(strides) == len(kernels)):
        raise ValueError(f"filters, strides and kernels need one entry per level; got "
                         f"{len(filters)}, {len(strides)}, {len(kernels)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    inputs = keras.Input(shape=(None,) * dim + (num_channels,), name="image")
    x = inputs
    skips = []
    for level, (f, s, k) in enumerate(zip(filters, strides, kernels)):
        x = _block(x, f, k, s, f"enc{level}a")
        x = _block(x, f, k, 1, f"enc{level}b")
        skips.append(x)
    outputs = {}
    for level in range(len(filters) - 2, -1, -1):
        up = strides[level + 1]
        x = _transpose_layer(dim)(filters[level], up, strides=up, use_bias=False, kernel_initializer=_he_normal(),
                                  name=f"up{level}")(x)
        x = layers.Concatenate(axis=-1, name=f"skip{level}")([x, skips[level]])
        x = _block(x, filters[level], kernels[level], 1, f"dec{level}a")
        x = _block(x, filters[level], kernels[level], 1, f"dec{level}b")
        if deep_supervision or level == 0:
            outputs[level] = _head(x, num_outputs, activation, level, logits)
    if len(filters) == 1:  # no decoder: the head sits on the encoder
        outputs[0] = _head(x, num_outputs, activation, 0, logits)
    if not deep_supervision:
        return keras.Model(inputs, outputs[0], name=name)
    return keras.Model(inputs, [outputs[level] for level in sorted(outputs)], name=name)


def build_from_plan(plan, deep_supervision: bool = False, num_outputs: int | None = None,
                    activation: str = "softmax", logits: bool = False) -> keras.Model:
    """The network `plan` (a `unet.preprocessing.plan.Plan`) describes, taking its
    `input_channels` (a cascade's previous stage channels included); `num_outputs` defaults to
    the plan's classes (regions: one channel per region, with "sigmoid")."""
    return build_unet(plan.input_channels, plan.num_classes if num_outputs is None else num_outputs,
                      plan.filters, plan.strides, plan.kernels, deep_supervision=deep_supervision,
                      activation=activation, logits=logits)
