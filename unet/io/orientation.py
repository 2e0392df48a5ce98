"""Bringing voxel arrays to one canonical orientation (RAS) and back.

Cases in one dataset may be stored in different voxel orders; statistics such as
the median spacing per axis are only meaningful once every case has the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np


@dataclass(frozen=True)
class Reorientation:
    """The axis permutation/flips taking a raw array to canonical RAS order (nibabel `ornt`)."""

    to_canonical: tuple[tuple[float, float], ...]

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> "Reorientation":
        ornt = nio.io_orientation(np.asarray(affine))
        transform = nio.ornt_transform(ornt, nio.axcodes2ornt("RAS"))
        return cls(tuple((float(a), float(f)) for a, f in transform))

    @classmethod
    def from_json(cls, value: list) -> "Reorientation":
        return cls(tuple((float(a), float(f)) for a, f in value))

    def to_json(self) -> list:
        return [list(row) for row in self.to_canonical]

    @property
    def _forward(self) -> np.ndarray:
        return np.asarray(self.to_canonical)

    @property
    def _inverse(self) -> np.ndarray:
        # The inverse of an orientation transform is again one: undo the permutation and flips.
        fwd = self._forward
        inv = np.zeros_like(fwd)
        for src, (dst, flip) in enumerate(fwd):
            inv[int(dst)] = (src, flip)
        return inv

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Raw voxel order -> canonical; trailing axes beyond the first three are carried along."""
        return np.ascontiguousarray(nio.apply_orientation(array, self._forward))

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical voxel order -> raw."""
        return np.ascontiguousarray(nio.apply_orientation(array, self._inverse))

    def spacing(self, raw_spacing) -> tuple[float, ...]:
        """Spacing per canonical axis, given the raw spacing per array axis."""
        raw = list(raw_spacing)
        out = [0.0, 0.0, 0.0]
        for src, (dst, _flip) in enumerate(self.to_canonical):
            out[int(dst)] = float(raw[src])
        return tuple(out)

    def shape(self, raw_shape) -> tuple[int, ...]:
        """Canonical shape of the first three axes, given the raw shape."""
        raw = list(raw_shape)[:3]
        out = [0, 0, 0]
        for src, (dst, _flip) in enumerate(self.to_canonical):
            out[int(dst)] = int(raw[src])
        return tuple(out)
