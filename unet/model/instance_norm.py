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
    `gamma` and shifted by `beta` (C,), computed in `gamma`'s dtype and returned in `x`'s.

    The work is done on `x` seen as rows of its last spatial axis times the channels,
    (B, rows, Z * C): a per-(sample, channel) factor broadcast over rows of 8 or 16 channels
    runs at a quarter of the speed of a plain elementwise product in TensorFlow's CPU kernels
    (shorter than one vector register); over rows of Z * C values it runs at full speed.
    """
    out_dtype = x.dtype
    shape = ops.shape(x)
    batch, z, channels = shape[0], shape[-2], shape[-1]

    def rows(v):
        """(B, C) per sample and channel -> (B, 1, Z * C), to broadcast over the rows."""
        return ops.tile(ops.expand_dims(v, 1), (1, 1, z))

    def total(v):
        """(B, rows, Z * C) -> (B, C): the sum over the spatial axes."""
        return ops.sum(ops.reshape(ops.sum(v, axis=1), (batch, z, channels)), axis=1)

    def average(v):
        """(B, rows, Z * C) -> (B, C): the mean over the spatial axes (a mean of equal-sized means;
        no division by a count, which graph optimization would turn into a product)."""
        return ops.mean(ops.reshape(ops.mean(v, axis=1), (batch, z, channels)), axis=1)

    @ops.custom_gradient
    def forward(x, gamma, beta):
        xw = ops.reshape(ops.cast(x, gamma.dtype), (batch, -1, z * channels))
        mean = average(xw)
        centred = xw - rows(mean)  # kept for the backward pass instead of x
        inv = ops.rsqrt(average(centred * centred) + epsilon)
        scale = inv * gamma  # (B, C)
        outputs = ops.cast(ops.reshape(centred * rows(scale) + rows(ops.broadcast_to(beta, ops.shape(scale))),
                                       shape), out_dtype)

        def backward(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            with keras.name_scope("instance_norm_grad"):  # to find it in a profile
                dy = ops.reshape(ops.cast(upstream, centred.dtype), ops.shape(centred))
                count = ops.cast(ops.shape(centred)[1] * z, centred.dtype)
                sum_dy = total(dy)
                sum_dy_xhat = total(dy * centred) * inv  # xhat = centred * inv
                # dx = gamma inv (dy - mean(dy) - xhat mean(dy xhat)) = scale dy + b centred + c
                b = -scale * inv * sum_dy_xhat / count
                c = -scale * sum_dy / count
                dx = dy * rows(scale) + (centred * rows(b) + rows(c))
                dgamma = ops.reshape(ops.sum(sum_dy_xhat, axis=0), ops.shape(gamma))
                dbeta = ops.reshape(ops.sum(sum_dy, axis=0), ops.shape(beta))
                return ops.cast(ops.reshape(dx, shape), out_dtype), dgamma, dbeta

        return outputs, backward

    return forward(x, gamma, beta)
