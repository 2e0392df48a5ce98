import pytest

from unet.training.settings import TrainSettings, resolved_recipe


def test_from_config():
    settings = TrainSettings.from_config({"epochs": 3, "learning_rate": 0.01, "resume": True})
    assert (settings.epochs, settings.learning_rate, settings.resume) == (3, 0.01, True)
    assert settings.steps_per_epoch == TrainSettings().steps_per_epoch  # defaults kept


def test_from_config_unknown_key_is_named():
    with pytest.raises(ValueError, match="epoch_count"):
        TrainSettings.from_config({"epochs": 3, "epoch_count": 4})


def test_each_recipe_fills_the_keys_left_out():
    ours, nnunet, nvidia = (TrainSettings.from_config({"recipe": name}) for name in ("ours", "nnunet", "nvidia"))
    assert TrainSettings() == ours  # the default recipe
    assert (ours.optimizer, ours.learning_rate, ours.scheduler, ours.weight_decay, ours.grad_clip) == \
        ("adam", 3e-3, "poly", 0.0, 0.0)
    assert (nnunet.optimizer, nnunet.learning_rate, nnunet.scheduler, nnunet.momentum, nnunet.weight_decay,
            nnunet.grad_clip) == ("sgd", 0.01, "poly", 0.99, 3e-5, 12.0)
    assert (nvidia.optimizer, nvidia.learning_rate, nvidia.scheduler, nvidia.weight_decay, nvidia.grad_clip) == \
        ("adam", 3e-4, "constant", 1e-4, 0.0)
    assert ours.momentum is None and nvidia.momentum is None  # Adam has none


def test_keys_the_user_sets_win_over_the_recipe():
    settings = TrainSettings.from_config({"recipe": "nnunet", "learning_rate": 0.02, "grad_clip": 0,
                                          "weight_decay": 0.0})
    assert (settings.optimizer, settings.learning_rate, settings.grad_clip, settings.weight_decay) == \
        ("sgd", 0.02, 0, 0.0)
    # Another optimizer keeps the recipe's other keys; momentum belongs to sgd only.
    adam = TrainSettings.from_config({"recipe": "nnunet", "optimizer": "adam"})
    assert (adam.optimizer, adam.learning_rate, adam.weight_decay, adam.grad_clip, adam.momentum) == \
        ("adam", 0.01, 3e-5, 12.0, None)
    # `ours` keeps what the other optimizers had before: AdamW rate 1e-3 and its weight decay, SGD
    # rate 1e-3, momentum 0.99 and no weight decay.
    adamw = TrainSettings(optimizer="adamw")
    assert (adamw.learning_rate, adamw.weight_decay) == (1e-3, 3e-5)
    sgd = TrainSettings(optimizer="sgd", momentum=0.9)
    assert (sgd.momentum, sgd.weight_decay, sgd.learning_rate) == (0.9, 0.0, 1e-3)


def test_resolved_settings_read_back_as_themselves():
    """A job file holds resolved settings (unet.training.multinode): reading them back changes nothing."""
    from dataclasses import asdict

    for section in ({"recipe": "nnunet", "optimizer": "adam"}, {"recipe": "nvidia"}, {"optimizer": "sgd"}):
        settings = TrainSettings.from_config(section)
        assert TrainSettings.from_config(asdict(settings)) == settings


def test_recipe_errors_name_the_key():
    with pytest.raises(ValueError, match="train.recipe"):
        TrainSettings(recipe="fast")
    with pytest.raises(ValueError, match="train.momentum"):
        TrainSettings.from_config({"recipe": "nvidia", "momentum": 0.9})
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainSettings(optimizer="rmsprop")


def test_the_recipe_resolved_is_what_the_section_means():
    """A rule's params (rules/train.smk): sections that train the same model give the same params."""
    implicit = resolved_recipe({"epochs": 3})
    spelled_out = resolved_recipe({"epochs": 3, "recipe": "ours", "optimizer": "adam", "learning_rate": 3e-3})
    assert implicit == spelled_out == {"epochs": 3, "optimizer": "adam", "learning_rate": 3e-3, "scheduler": "poly",
                                       "momentum": None, "weight_decay": 0.0, "grad_clip": 0.0}
    # Another recipe, or one of its keys changed, is another model.
    assert resolved_recipe({"epochs": 3, "recipe": "nnunet"})["learning_rate"] == 0.01
    assert resolved_recipe({"epochs": 3, "learning_rate": 1e-3}) != implicit
    with pytest.raises(ValueError, match="unknown recipe"):
        resolved_recipe({"recipe": "fast"})
