"""What training the planned U-Net costs on the GPU: an estimate in bytes, and the budget it must fit.

Each conv block keeps three tensors for the backward pass (conv, instance norm and LeakyReLU
outputs), in float16 under mixed precision; every parameter costs 16 bytes (float32 weight,
gradient and two Adam moments). The planner's search (`unet.preprocessing.search`) sizes patch and
batch against this model.
"""

from __future__ import annotations

import numpy as np

TENSORS_PER_CONV = 3
ACTIVATION_BYTES = 2
PARAMETER_BYTES = 16
# What the framework takes before the first tensor (CUDA context, cuDNN workspaces, allocator
# slack). Calibrated so that a BraTS-like dataset at 8 GB gets nnU-Net v2's own 128x160x112,
# batch 2: by this model that patch needs 6.02 GiB, the candidate before it (128x160x128) 6.82
# GiB, and 8 less 1.5 leaves 6.5 GiB. gpu_memory_gb counts GiB, as nvidia-smi does.
RESERVED_GB = 1.5
GIB = 2 ** 30
DEFAULT_GPU_MEMORY_GB = 16.0


def activation_count(patch_size, strides, filters, num_channels: int, num_classes: int) -> int:
    """Activations one sample keeps for the backward pass of the planned U-Net.

    Per level with V voxels and F filters: encoder, two conv blocks (TENSORS_PER_CONV * F * V
    each); decoder (all levels but the bottleneck), the transposed conv output (F * V), the skip
    concatenation (2F * V) and two conv blocks. Plus the input, logits and softmax at full size.
    """
    voxels = np.array(patch_size, dtype=float)
    count = float(np.prod(patch_size)) * (num_channels + 2 * num_classes)
    for level, (stride, f) in enumerate(zip(strides, filters)):
        voxels = voxels / np.array(stride)
        v = float(np.prod(voxels))
        count += 2 * TENSORS_PER_CONV * f * v
        if level < len(filters) - 1:
            count += (1 + 2 + 2 * TENSORS_PER_CONV) * f * v
    return int(round(count))


def parameter_count(strides, kernels, filters, num_channels: int, num_classes: int) -> int:
    """Weights of the planned U-Net (no biases: each conv is followed by instance norm)."""
    count, previous = 0, num_channels
    for level, (kernel, f) in enumerate(zip(kernels, filters)):
        k = int(np.prod(kernel))
        count += k * (previous * f + f * f) + 4 * f          # two convs + two norms (scale, offset)
        if level < len(filters) - 1:
            up = int(np.prod(strides[level + 1]))
            count += up * filters[level + 1] * f              # transposed conv from the level below
            count += k * (2 * f * f + f * f) + 4 * f          # two decoder convs + norms
        previous = f
    return count + filters[0] * num_classes + num_classes    # 1x1 softmax head


def training_memory(patch_size, strides, kernels, filters, num_channels: int, num_classes: int,
                    batch_size: int) -> float:
    """Estimated GPU bytes to train the planned U-Net, without RESERVED_GB."""
    activations = activation_count(patch_size, strides, filters, num_channels, num_classes)
    weights = parameter_count(strides, kernels, filters, num_channels, num_classes)
    return batch_size * activations * ACTIVATION_BYTES + weights * PARAMETER_BYTES


def memory_budget(gpu_memory_gb: float) -> float:
    """Bytes available to the network's tensors on a GPU of `gpu_memory_gb` GiB."""
    return (gpu_memory_gb - RESERVED_GB) * GIB


def memory_estimate_gb(training_bytes: float) -> float:
    """The GiB (two decimals) a GPU needs for `training_bytes` of tensors: RESERVED_GB added."""
    return round((training_bytes + RESERVED_GB * GIB) / GIB, 2)
