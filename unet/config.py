"""Building typed settings from a validated config section."""

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
