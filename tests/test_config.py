"""Which settings are results and which only change how a stage runs (unet/config.py)."""

import yaml

from unet.config import EXECUTION_SETTINGS, result_settings


def test_result_settings_leave_out_execution_settings_only():
    config = {"train": {"learning_rate": 0.01, "gpus": 2, "resume": True, "distribution": "horovod", "xla": True,
                        "deterministic": False}, "predict": {"overlap": 0.5, "batch_size": 8, "tta": True}}
    assert result_settings(config, "train") == {"learning_rate": 0.01, "gpus": 2}
    assert result_settings(config, "predict") == {"overlap": 0.5, "tta": True}


def test_execution_settings_are_config_keys(request):
    schema = yaml.safe_load((request.config.rootpath / "schemas" / "config.schema.yaml").read_text())
    for section, keys in EXECUTION_SETTINGS.items():
        assert set(keys) <= set(schema["properties"][section]["properties"]), section
