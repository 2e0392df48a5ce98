import pytest

from unet.training.schedules import learning_rate


def test_poly_starts_at_base_and_decreases():
    rates = [learning_rate("poly", 0.01, epoch, 10) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.01)
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
    assert rates[5] == pytest.approx(0.01 * 0.5 ** 0.9)


def test_constant_is_constant():
    assert {learning_rate("constant", 3e-4, epoch, 7) for epoch in range(7)} == {3e-4}


def test_unknown_schedule_names_the_key():
    with pytest.raises(ValueError, match="train.scheduler.*cosine"):
        learning_rate("cosine", 0.01, 0, 10)
