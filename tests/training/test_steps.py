"""unet/training/steps.py: the averaged gradients' global norm is clipped before the update."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet.training.distribution import Distribution
from unet.training.steps import clip_by_global_norm, make_train_step


def test_a_gradient_of_norm_100_is_clipped_to_12():
    grads = [tf.constant([60.0, 0.0]), tf.constant([[80.0]])]  # global norm 100
    clipped = clip_by_global_norm(grads, 12.0, keras.optimizers.SGD(1.0))
    assert float(tf.linalg.global_norm(clipped)) == pytest.approx(12.0)
    np.testing.assert_allclose(clipped[0].numpy(), [7.2, 0.0], rtol=1e-6)  # the direction kept
    small = [tf.constant([3.0, 4.0])]
    assert clip_by_global_norm(small, 12.0, keras.optimizers.SGD(1.0))[0].numpy().tolist() == [3.0, 4.0]
    assert clip_by_global_norm(grads, 0, keras.optimizers.SGD(1.0))[1].numpy().tolist() == [[80.0]]  # 0: off


@pytest.mark.parametrize("loss_scaling", [False, True])
def test_the_training_step_clips_before_the_update(loss_scaling):
    """One step of plain SGD (rate 1) on a loss whose gradient is (60, 80): the weights move by the
    clipped gradient (7.2, 9.6), also when a LossScaleOptimizer scales the gradients by 2^15."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(inputs))
    optimizer = keras.optimizers.SGD(1.0)
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    step = make_train_step(model, optimizer, lambda segs, outputs: tf.reduce_sum(outputs), Distribution(),
                           grad_clip=12.0)
    step((tf.constant([[60.0, 80.0]]), tf.zeros([1])))
    np.testing.assert_allclose(model.get_layer(index=1).kernel.numpy().ravel(), [1 - 7.2, 1 - 9.6], rtol=1e-5)
