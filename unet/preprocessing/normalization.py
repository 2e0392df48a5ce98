"""Per-channel intensity normalization, as the plan prescribes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChannelNormalization:
    """How one channel is normalized.

    scheme "zscore": per-case mean/std (inside the non-zero mask when `use_mask`, the mask's
    outside then set to 0); scheme "ct": clip to the dataset's foreground percentiles, then
    z-score with the dataset's foreground mean/std.
    """

    scheme: str
    use_mask: bool = False
    clip: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None

    def to_json(self) -> dict:
        return {"scheme": self.scheme, "use_mask": self.use_mask,
                "clip": list(self.clip) if self.clip else None, "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, d: dict) -> "ChannelNormalization":
        clip = d.get("clip")
        return cls(scheme=d["scheme"], use_mask=bool(d.get("use_mask", False)),
                   clip=tuple(clip) if clip else None, mean=d.get("mean"), std=d.get("std"))


def normalize_channel(x: np.ndarray, norm: ChannelNormalization, mask: np.ndarray | None) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    if norm.scheme == "ct":
        lo, hi = norm.clip
        return ((np.clip(x, lo, hi) - norm.mean) / max(norm.std, 1e-8)).astype(np.float32)
    if norm.scheme != "zscore":
        raise ValueError(f"unknown normalization scheme {norm.scheme!r} (expected 'zscore' or 'ct')")
    if norm.use_mask and mask is not None and mask.any():
        values = x[mask]
        out = (x - values.mean()) / max(values.std(), 1e-8)
        return np.where(mask, out, 0.0).astype(np.float32)
    return ((x - x.mean()) / max(x.std(), 1e-8)).astype(np.float32)


def normalize(image: np.ndarray, norms: list[ChannelNormalization]) -> np.ndarray:
    """Normalize a (X, Y, Z, C) image channel by channel; the mask is where any channel is non-zero."""
    if image.shape[-1] != len(norms):
        raise ValueError(f"image has {image.shape[-1]} channels but the plan normalizes {len(norms)}")
    mask = np.any(image != 0, axis=-1)
    return np.stack([normalize_channel(image[..., c], n, mask) for c, n in enumerate(norms)], axis=-1)
