"""Learning-rate schedules, as a function of the epoch (set once per epoch)."""

from __future__ import annotations


def learning_rate(schedule: str, base: float, epoch: int, epochs: int) -> float:
    if schedule == "constant":
        return base
    if schedule == "poly":  # nnU-Net: (1 - epoch / epochs) ** 0.9
        return base * (1.0 - epoch / max(1, epochs)) ** 0.9
    raise ValueError(f"config train.scheduler: unknown schedule {schedule!r} (poly or constant)")
