"""Training settings, built once from the validated config's `train:` section."""

from __future__ import annotations

from dataclasses import dataclass

from unet.config import settings_from


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
    gpus: int = 1                    # per process (per node when nodes > 1)
    nodes: int = 1                   # > 1: one process per node, MultiWorkerMirroredStrategy (SLURM)
    resume: bool = False
    validation_patches: int = 32

    def __post_init__(self):
        if self.deep_supervision:
            raise ValueError("config train.deep_supervision: not implemented yet; set it to false")

    @classmethod
    def from_config(cls, section: dict) -> "TrainSettings":
        return settings_from(cls, section, "train")
