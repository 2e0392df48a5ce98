"""What a preprocessed case needs to go back to its raw voxel grid: the case's geometry JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from unet.io.atomic import read_json, write_json
from unet.io.orientation import Reorientation
from unet.preprocessing.cropping import Box


@dataclass(frozen=True)
class CaseGeometry:
    case: str
    raw_shape: tuple[int, ...]          # spatial shape in the NIfTI file
    raw_affine: np.ndarray              # 4x4
    reorientation: Reorientation        # raw -> canonical
    canonical_shape: tuple[int, ...]
    spacing: tuple[float, ...]          # canonical axes, before resampling
    crop_box: Box                       # in canonical voxels
    target_spacing: tuple[float, ...]
    resampled_shape: tuple[int, ...]

    @property
    def cropped_shape(self) -> tuple[int, ...]:
        return tuple(hi - lo for lo, hi in self.crop_box)

    def to_json(self) -> dict:
        return {
            "case": self.case, "raw_shape": list(self.raw_shape),
            "raw_affine": np.asarray(self.raw_affine).tolist(),
            "reorientation": self.reorientation.to_json(),
            "canonical_shape": list(self.canonical_shape), "spacing": list(self.spacing),
            "crop_box": [list(b) for b in self.crop_box],
            "target_spacing": list(self.target_spacing), "resampled_shape": list(self.resampled_shape),
        }

    @classmethod
    def from_json(cls, d: dict) -> "CaseGeometry":
        return cls(
            case=d["case"], raw_shape=tuple(d["raw_shape"]), raw_affine=np.array(d["raw_affine"]),
            reorientation=Reorientation.from_json(d["reorientation"]),
            canonical_shape=tuple(d["canonical_shape"]), spacing=tuple(d["spacing"]),
            crop_box=tuple((int(lo), int(hi)) for lo, hi in d["crop_box"]),
            target_spacing=tuple(d["target_spacing"]), resampled_shape=tuple(d["resampled_shape"]),
        )

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CaseGeometry":
        return cls.from_json(read_json(path))
