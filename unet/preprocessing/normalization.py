"""Per-channel intensity normalization: which scheme the planner chooses for a channel, and applying it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NORMALIZATION_SCHEMES = ("ct", "zscore")


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


def choose_normalization(fingerprint: dict, schemes: Sequence[str] | None,
                         use_mask: bool | None) -> tuple[ChannelNormalization, ...]:
    """Per channel: CT -> clip to the dataset's foreground percentiles and z-score with its
    foreground mean/std; anything else -> per-case z-score, inside the non-zero mask when
    cropping removed over a quarter of the box (nnU-Net). `schemes`/`use_mask` override."""
    modalities = fingerprint["modalities"]
    overridden = schemes is not None
    if schemes is None:
        schemes = ["ct" if m.upper() == "CT" else "zscore" for m in modalities]
    elif len(schemes) != len(modalities):
        raise ValueError(f"config plan.normalization lists {len(schemes)} schemes but the dataset has "
                         f"{len(modalities)} channels {list(modalities)}: give one per channel")
    if use_mask is None:
        use_mask = float(np.median([c["crop_fraction"] for c in fingerprint["cases"]])) < 0.75
    out = []
    for c, (scheme, modality, stats) in enumerate(zip(schemes, modalities, fingerprint["intensity"])):
        if scheme == "ct":
            if stats.get("mean") is None:
                where = "config plan.normalization: " if overridden else ""
                raise ValueError(f"{where}channel {c} ({modality}) cannot use 'ct' normalization: the "
                                 f"fingerprint has no foreground (labelled) intensities for it")
            out.append(ChannelNormalization("ct", clip=(stats["percentile_00_5"], stats["percentile_99_5"]),
                                            mean=stats["mean"], std=stats["std"]))
        elif scheme == "zscore":
            out.append(ChannelNormalization("zscore", use_mask=bool(use_mask)))
        else:
            raise ValueError(f"config plan.normalization: unknown scheme {scheme!r} for channel {c}; "
                             f"expected one of {list(NORMALIZATION_SCHEMES)}")
    return tuple(out)


def normalize_channel(x: np.ndarray, norm: ChannelNormalization, mask: np.ndarray | None) -> np.ndarray:
    """One (X, Y, Z) channel normalized, as a new float32 array (statistics in float64)."""
    if norm.scheme not in NORMALIZATION_SCHEMES:
        raise ValueError(f"unknown normalization scheme {norm.scheme!r} (expected 'zscore' or 'ct')")
    out = np.array(x, dtype=np.float32, order="K")  # the one copy; the rest works in place
    masked = norm.scheme == "zscore" and norm.use_mask and mask is not None and bool(mask.any())
    if norm.scheme == "ct":
        lo, hi = norm.clip
        np.clip(out, lo, hi, out=out)
        mean, std = norm.mean, norm.std
    elif masked:
        values = out[mask]
        mean, std = values.mean(dtype=np.float64), values.std(dtype=np.float64)
        del values
    else:
        mean, std = out.mean(dtype=np.float64), out.std(dtype=np.float64)
    out -= np.float32(mean)
    out *= np.float32(1.0 / max(float(std), 1e-8))
    if masked:
        out[~mask] = 0.0
    return out


def normalize(image: np.ndarray, norms: list[ChannelNormalization],
              mask: np.ndarray | None = None) -> np.ndarray:
    """Normalize a (X, Y, Z, C) image channel by channel; the mask is where any channel is
    non-zero (computed unless given)."""
    if image.shape[-1] != len(norms):
        raise ValueError(f"image has {image.shape[-1]} channels but the plan normalizes {len(norms)}")
    if mask is None:
        mask = np.any(image != 0, axis=-1)
    out = np.empty(image.shape, dtype=np.float32)
    for c, n in enumerate(norms):
        out[..., c] = normalize_channel(image[..., c], n, mask)
    return out
