"""Instance normalization: per sample and channel, over the spatial axes, then a learned scale
(`gamma`) and shift (`beta`) per channel.

It computes what `keras.layers.GroupNormalization(groups=channels)` computes (which the network
used before, and which models saved then still load as), with the same weights, in fewer passes
over the activations, which on a CPU are what the full-resolution levels of a small network
spend their time on (the convolutions there have only 8-16 channels):

- forward: the moments, then one multiply-add, `x * scale + shift` with scale = gamma /
  sqrt(var + eps), shift = beta - mean * scale (GroupNormalization reshapes into groups first);
- backward: its own gradient, two reductions (sum dy, sum dy * x) and one multiply-add per
  element, where automatic differentiation of the forward pass makes about ten passes.

Statistics and arithmetic are float32 also under mixed precision (the output is cast back), as
in GroupNormalization. keras.ops only, so it runs on every Keras backend.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="unet")
class InstanceNormalization(keras.layers.Layer):
    """Normalizes a (B, *spatial, C) tensor per sample and channel; `gamma` and `beta` of shape
    (C,), as GroupNormalization's."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.supports_masking = True
        self.autocast = False  # the float16 input stays float16; the statistics are float32

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis needs a known size, got {input_shape}")
        # gamma before beta: the variable order of GroupNormalization, which .weights.h5 files keep.
        self.gamma = self.add_weight(shape=(channels,), name="gamma", initializer="ones", autocast=False)
        self.beta = self.add_weight(shape=(channels,), name="beta", initializer="zeros", autocast=False)
        self.input_spec = keras.layers.InputSpec(min_ndim=3, axes={-1: channels})

    def call(self, inputs):
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        return instance_norm(inputs, ops.cast(self.gamma, dtype), ops.cast(self.beta, dtype), self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def instance_norm(x, gamma, beta, epsilon: float):
    """`x` (B, *spatial, C) normalized per sample and channel over the spatial axes, scaled by
    `gamma` and shifted by `beta` (C,), computed in `gamma`'s dtype and returned in `x`'s."""
    out_dtype = x.dtype
    axes = tuple(range(1, len(x.shape) - 1))

    @ops.custom_gradient
    def forward(x, gamma, beta):
        x32 = ops.cast(x, gamma.dtype)
        mean, variance = ops.moments(x32, axes, keepdims=True)
        inv = ops.rsqrt(variance + epsilon)
        scale = inv * gamma
        shift = beta - mean * scale
        outputs = ops.cast(x32 * scale + shift, out_dtype)

        def backward(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            dy = ops.cast(upstream, x32.dtype)
            count = 1
            for axis in axes:
                count *= ops.shape(x32)[axis]
            count = ops.cast(count, x32.dtype)
            sum_dy = ops.sum(dy, axis=axes, keepdims=True)
            # sum(dy * xhat) with xhat = (x - mean) * inv, from sum(dy * x): one product fewer.
            sum_dy_xhat = (ops.sum(dy * x32, axis=axes, keepdims=True) - mean * sum_dy) * inv
            # dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat)) = scale * dy + b * x + c
            b = -scale * inv * sum_dy_xhat / count
            c = -scale * sum_dy / count - b * mean
            dx = ops.cast(scale * dy + (b * x32 + c), out_dtype)
            batch_and_spatial = (0,) + axes
            dgamma = ops.reshape(ops.sum(sum_dy_xhat, axis=batch_and_spatial), ops.shape(gamma))
            dbeta = ops.reshape(ops.sum(sum_dy, axis=batch_and_spatial), ops.shape(beta))
            return dx, dgamma, dbeta

        return outputs, backward

    return forward(x, gamma, beta)
