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
    scheduler: str = "poly"          # poly | constant | cosine
    warmup_epochs: int = 0
    amp: bool | str = False          # false | true (float16) | "float16" | "bfloat16"
    xla: bool = False
    deep_supervision: bool = True
    batch_dice: bool = False
    regions: object = None           # None | "dataset" | {name: [label values]}: sigmoid per region
    distribution: str = "auto"       # auto | mirrored | multiworker | horovod
    deterministic: bool = False
    elastic: bool = False
    augment: bool = True
    oversampling: float = 0.33
    seed: int = 0
    gpus: int = 1                    # per process (per node when nodes > 1)
    nodes: int = 1                   # > 1: one process per node, MultiWorkerMirroredStrategy (SLURM)
    resume: bool = False
    validation_patches: int = 32
    # Memory for the input pipeline's decoded cases (MB), from the job's resources, not config:
    # None = unet.data.pipeline's default.
    input_memory_mb: int | None = None

    @classmethod
    def from_config(cls, section: dict) -> "TrainSettings":
        return settings_from(cls, section, "train")
