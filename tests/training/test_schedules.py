import math

import pytest

from unet.training.schedules import learning_rate


def test_poly_starts_at_base_and_decreases():
    rates = [learning_rate("poly", 0.01, epoch, 10) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.01)
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
    assert rates[5] == pytest.approx(0.01 * 0.5 ** 0.9)
    assert learning_rate("poly", 0.01, 10, 10) == 0.0


def test_constant_is_constant():
    assert {learning_rate("constant", 3e-4, epoch, 7) for epoch in range(7)} == {3e-4}


def test_cosine_follows_half_a_cosine():
    rates = [learning_rate("cosine", 0.02, epoch, 8) for epoch in range(9)]
    assert rates[0] == pytest.approx(0.02)
    assert rates[4] == pytest.approx(0.01)  # halfway
    assert rates[2] == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)))
    assert rates[8] == pytest.approx(0.0, abs=1e-15)
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_warmup_ramps_linearly_then_runs_the_schedule_over_the_remaining_epochs():
    rates = [learning_rate("cosine", 0.01, epoch, 12, warmup_epochs=4) for epoch in range(12)]
    assert rates[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert rates[4] == pytest.approx(0.01)  # the decay starts at the base rate
    assert rates[8] == pytest.approx(0.005)  # halfway through the 8 decay epochs
    poly = [learning_rate("poly", 0.01, epoch, 6, warmup_epochs=2) for epoch in range(6)]
    assert poly[:3] == pytest.approx([0.005, 0.01, 0.01])
    assert poly[4] == pytest.approx(0.01 * 0.5 ** 0.9)


def test_fractional_epochs_give_the_per_step_curve():
    assert learning_rate("poly", 1.0, 2.5, 10) == pytest.approx(0.75 ** 0.9)
    assert learning_rate("cosine", 1.0, 0.5, 10, warmup_epochs=2) == pytest.approx(0.75)


def test_unknown_schedule_names_the_key():
    with pytest.raises(ValueError, match="train.scheduler.*linear"):
        learning_rate("linear", 0.01, 0, 10)
    with pytest.raises(ValueError, match="train.scheduler"):
        learning_rate("linear", 0.01, 0, 10, warmup_epochs=3)  # even during warm-up
    with pytest.raises(ValueError, match="train.warmup_epochs"):
        learning_rate("poly", 0.01, 0, 10, warmup_epochs=-1)
