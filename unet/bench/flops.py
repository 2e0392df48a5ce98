"""FLOPs of a network's forward pass, counted analytically from its convolutions.

2 FLOPs per multiply-add of the convolutions and transposed convolutions; normalization,
activations and the softmax are left out, being a few % at most. The training benchmark takes a
training step as 3x the forward pass (the backward pass computes gradients for both inputs and
weights, each about one forward pass).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def conv_flops(kernel: Sequence[int], c_in: int, c_out: int, voxels: int) -> int:
    """2 * kernel volume * C_in * C_out * voxels: the multiply-adds of a convolution (x2), with
    `voxels` its output voxels (for a transposed convolution: its input voxels, see below)."""
    return 2 * int(np.prod(kernel)) * int(c_in) * int(c_out) * int(voxels)


def forward_flops(model, input_shape: Sequence[int]) -> int:
    """Forward FLOPs of one sample of spatial+channel shape `input_shape` through `model`'s
    convolutions and transposed convolutions.

    A transposed convolution multiplies each *input* voxel by the whole kernel, so it counts its
    input voxels (with kernel == stride, as in the U-Net, that is 2 * C_in * C_out * output voxels;
    counting output voxels times the kernel volume would overstate it by the kernel volume).
    """
    import keras

    concrete = keras.models.clone_model(model, input_tensors=keras.Input(shape=tuple(input_shape)))
    total = 0
    for layer in concrete.layers:
        convolution = isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D))
        if not (convolution or _is_transpose(layer)):
            continue
        kernel, c_out = layer.kernel_size, layer.filters
        c_in = int(layer.input.shape[-1]) // getattr(layer, "groups", 1)
        if _is_transpose(layer):
            total += conv_flops(kernel, c_in, c_out, int(np.prod(layer.input.shape[1:-1])))
        else:
            total += conv_flops(kernel, c_in, c_out, int(np.prod(layer.output.shape[1:-1])))
    return total


def _is_transpose(layer) -> bool:
    import keras

    return isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                              keras.layers.Conv3DTranspose))


def plan_forward_flops(plan) -> int:
    """Forward FLOPs of one patch through the network `plan` describes (built in float32)."""
    import keras

    from unet.model.network import build_from_plan

    keras.mixed_precision.set_global_policy("float32")
    return forward_flops(build_from_plan(plan), (*plan.patch_size, plan.input_channels))
