"""Building typed settings from a validated config section, and which settings change results."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def settings_from(cls: type[T], section: dict[str, Any], name: str) -> T:
    """`cls(**section)`, with an error naming `name.key` for keys `cls` does not have."""
    unknown = set(section) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"config {name}: unknown keys {sorted(unknown)}")
    return cls(**section)


# Settings that change how a stage runs but not what it writes: they are left out of the rules'
# params, so that changing one never reruns a stage (the scripts read them from config).
# train.gpus and train.nodes are not among them: they change the global batch.
EXECUTION_SETTINGS = {
    "train": ("resume", "distribution", "xla", "deterministic"),
    "predict": ("batch_size",),
}


def result_settings(config: dict[str, Any], section: str) -> dict[str, Any]:
    """`config[section]` without its EXECUTION_SETTINGS: what a rule's params carry."""
    skip = EXECUTION_SETTINGS.get(section, ())
    return {key: value for key, value in config[section].items() if key not in skip}
