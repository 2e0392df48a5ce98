"""unet/training/optimizers.py: each recipe's optimizer and hyper-parameters, and weight decay as
an L2 penalty in the gradient (sgd, adam) or decoupled (adamw), checked on one step."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from unet.training.optimizers import L2Adam, L2SGD, make_optimizer
from unet.training.settings import TrainSettings


def _learning_rate(optimizer) -> float:
    return float(np.asarray(optimizer.learning_rate))


def test_each_recipe_builds_its_optimizer():
    ours = make_optimizer(TrainSettings(recipe="ours"))
    assert isinstance(ours, L2Adam) and isinstance(ours, keras.optimizers.Adam)
    assert _learning_rate(ours) == pytest.approx(3e-3) and ours.l2 == 0.0

    nnunet = make_optimizer(TrainSettings(recipe="nnunet"))
    assert isinstance(nnunet, L2SGD) and isinstance(nnunet, keras.optimizers.SGD)
    assert _learning_rate(nnunet) == pytest.approx(0.01)
    assert (nnunet.momentum, nnunet.nesterov, nnunet.l2) == (0.99, True, 3e-5)
    assert nnunet.weight_decay is None  # not also Keras' decoupled decay

    nvidia = make_optimizer(TrainSettings(recipe="nvidia"))
    assert isinstance(nvidia, L2Adam)
    assert _learning_rate(nvidia) == pytest.approx(3e-4) and nvidia.l2 == 1e-4


def test_user_settings_reach_the_optimizer():
    sgd = make_optimizer(TrainSettings(recipe="nnunet", learning_rate=0.05, momentum=0.9, weight_decay=1e-3))
    assert (_learning_rate(sgd), sgd.momentum, sgd.l2) == (pytest.approx(0.05), 0.9, 1e-3)
    adamw = make_optimizer(TrainSettings(optimizer="adamw"))
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(3e-5)
    scaled = make_optimizer(TrainSettings(recipe="nnunet", amp=True))
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer) and isinstance(scaled.inner_optimizer, L2SGD)


def _one_step(optimizer, weights, gradient) -> np.ndarray:
    variable = keras.Variable(np.array(weights, np.float32))
    optimizer.apply([keras.ops.convert_to_tensor(np.array(gradient, np.float32))], [variable])
    return np.asarray(variable)


def test_sgd_weight_decay_is_an_l2_term_in_the_gradient():
    settings = TrainSettings(recipe="nnunet", weight_decay=0.1)
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    after = _one_step(make_optimizer(settings), w, g)
    # torch.optim.SGD (Nesterov): g' = g + wd * w; the first step moves w by -lr * (1 + momentum) * g'.
    expected = w - 0.01 * (1 + 0.99) * (g + 0.1 * w)
    np.testing.assert_allclose(after, expected, rtol=1e-6)
    without = _one_step(make_optimizer(TrainSettings(recipe="nnunet", weight_decay=0.0)), w, g)
    np.testing.assert_allclose(without, w - 0.01 * 1.99 * g, rtol=1e-6)


def test_adam_weight_decay_is_an_l2_term_in_the_gradient():
    # With a zero gradient only the L2 term moves the weights: Adam's first step is -lr * sign(g').
    w = np.array([1.0, -2.0])
    after = _one_step(make_optimizer(TrainSettings(recipe="nvidia")), w, [0.0, 0.0])
    np.testing.assert_allclose(after, w - 3e-4 * np.sign(w), rtol=1e-5)
    unchanged = _one_step(make_optimizer(TrainSettings(recipe="nvidia", weight_decay=0.0)), w, [0.0, 0.0])
    np.testing.assert_array_equal(unchanged, w)
