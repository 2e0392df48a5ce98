"""Learning-rate schedules: pure functions of the (possibly fractional) epoch.

The loop sets the rate once per epoch, as nnU-Net does; passing `epoch + step / steps_per_epoch`
gives the per-step version of the same curve. `warmup_epochs` > 0 ramps the rate linearly up to
`base` first (any schedule), and the schedule then runs over the remaining epochs.
"""

from __future__ import annotations

import math

SCHEDULES = ("poly", "constant", "cosine")


def warmup_factor(epoch: float, warmup_epochs: int) -> float:
    """Linear ramp: 1/warmup in the first epoch, ..., 1.0 in the last warm-up epoch and after."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return 1.0
    return (epoch + 1.0) / warmup_epochs


def decay_factor(schedule: str, progress: float) -> float:
    """The schedule's multiplier of the base rate at `progress` in [0, 1] of the decay phase."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "poly":  # nnU-Net: (1 - epoch / epochs) ** 0.9
        return (1.0 - progress) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"config train.scheduler: unknown schedule {schedule!r} ({', '.join(SCHEDULES)})")


def learning_rate(schedule: str, base: float, epoch: float, epochs: int, warmup_epochs: int = 0) -> float:
    """The rate of `epoch` (0-based) of `epochs`: warm-up ramp, then `schedule` over the rest."""
    if warmup_epochs < 0:
        raise ValueError(f"config train.warmup_epochs: must be >= 0, got {warmup_epochs}")
    factor = decay_factor(schedule, 0.0)  # validates the name even during warm-up
    if epoch < warmup_epochs:
        return base * warmup_factor(epoch, warmup_epochs) * factor
    decay_epochs = max(1, epochs - warmup_epochs)
    return base * decay_factor(schedule, (epoch - warmup_epochs) / decay_epochs)
