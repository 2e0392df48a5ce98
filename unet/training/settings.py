"""Training settings, built once from the validated config's `train:` section."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 50
    steps_per_epoch: int = 250
    learning_rate: float = 1e-3
    optimizer: str = "adam"          # adam | adamw | sgd
    scheduler: str = "poly"          # poly | constant
    amp: bool = False
    xla: bool = False
    deep_supervision: bool = False
    augment: bool = True
    oversampling: float = 0.33
    seed: int = 0
    gpus: int = 1
    resume: bool = False
    validation_patches: int = 32

    @classmethod
    def from_config(cls, section: dict) -> "TrainSettings":
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"config train: unknown keys {sorted(unknown)}")
        return cls(**section)
