"""A U-Net built from the plan's per-level lists (filters, strides, kernels).

Each level: two conv -> instance norm -> LeakyReLU blocks, the first strided to downsample.
Up path: transposed convolution, skip concatenation, two blocks. Softmax head in float32,
so mixed precision keeps the probabilities and the loss in full precision.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers


def _conv_layer(dim: int):
    return layers.Conv3D if dim == 3 else layers.Conv2D


def _transpose_layer(dim: int):
    return layers.Conv3DTranspose if dim == 3 else layers.Conv2DTranspose


def _block(x, filters: int, kernel, stride, name: str):
    x = _conv_layer(len(kernel))(filters, kernel, strides=stride, padding="same", use_bias=False,
                                 name=f"{name}_conv")(x)
    # GroupNormalization with one group per channel is instance normalization.
    x = layers.GroupNormalization(groups=filters, epsilon=1e-5, name=f"{name}_norm")(x)
    return layers.LeakyReLU(negative_slope=0.01, name=f"{name}_act")(x)


def build_unet(num_channels: int, num_classes: int, filters: Sequence[int],
               strides: Sequence[Sequence[int]], kernels: Sequence[Sequence[int]],
               name: str = "unet") -> keras.Model:
    """Functional U-Net; the input's spatial size is left open so whole volumes or patches fit."""
    dim = len(strides[0])
    if not (len(filters) == len(strides) == len(kernels)):
        raise ValueError(f"filters, strides and kernels need one entry per level; got "
                         f"{len(filters)}, {len(strides)}, {len(kernels)}")
    inputs = keras.Input(shape=(None,) * dim + (num_channels,), name="image")
    x = inputs
    skips = []
    for level, (f, s, k) in enumerate(zip(filters, strides, kernels)):
        x = _block(x, f, k, s, f"enc{level}a")
        x = _block(x, f, k, 1, f"enc{level}b")
        skips.append(x)
    for level in range(len(filters) - 2, -1, -1):
        up = strides[level + 1]
        x = _transpose_layer(dim)(filters[level], up, strides=up, use_bias=False, name=f"up{level}")(x)
        x = layers.Concatenate(axis=-1, name=f"skip{level}")([x, skips[level]])
        x = _block(x, filters[level], kernels[level], 1, f"dec{level}a")
        x = _block(x, filters[level], kernels[level], 1, f"dec{level}b")
    logits = _conv_layer(dim)(num_classes, 1, name="head")(x)
    probs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, probs, name=name)


def build_from_plan(plan) -> keras.Model:
    """The network `plan` (a `unet.preprocessing.planning.Plan`) describes."""
    return build_unet(plan.num_channels, plan.num_classes, plan.filters, plan.strides, plan.kernels)
