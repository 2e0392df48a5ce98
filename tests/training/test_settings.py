import pytest

from unet.training.settings import TrainSettings


def test_from_config():
    settings = TrainSettings.from_config({"epochs": 3, "learning_rate": 0.01, "resume": True})
    assert (settings.epochs, settings.learning_rate, settings.resume) == (3, 0.01, True)
    assert settings.steps_per_epoch == TrainSettings().steps_per_epoch  # defaults kept


def test_from_config_unknown_key_is_named():
    with pytest.raises(ValueError, match="epoch_count"):
        TrainSettings.from_config({"epochs": 3, "epoch_count": 4})
