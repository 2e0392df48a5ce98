"""The accuracy benchmark's generated dataset, made hard on purpose: what trips a pipeline up on
real scans, with a known truth and reproducible from a seed.

Each case is two-channel MRI-like data in MSD layout, about 96 x 96 x 24 voxels:

- thick slices: about 0.7 x 0.7 x 4 mm (varying per case, so cases are resampled), the coarse
  axis LAST on disk (voxel order RAS, affine diagonal);
- partial volume: the scene is drawn on slices 4x thinner and averaged down, labels by the
  largest share of each thick voxel, as a scanner's slice profile would;
- labels: 1 organ (an ellipsoid, ~8% of the voxels), 2 vessel (a tube 2-3 mm wide winding
  through every slice, ~0.1-0.2%), 3 lesions (1-3 blobs of a few hundred voxels inside the organ,
  faint in channel 0, bright in channel 1): strong class imbalance;
- distractors: cysts outside the organ as bright as lesions in channel 1 but dark in channel 0,
  so a lesion is told apart only by both channels and where it lies;
- texture, a bias field and noise per channel; zero outside the body.

Only numpy is imported at module level; scipy and nibabel where a case is made or written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet.bench.synthetic import ellipsoid, write_generated_dataset

NAME = "BenchVessels"
MODALITIES = ("T1c", "T2w")
LABELS = {0: "background", 1: "organ", 2: "vessel", 3: "lesion"}
ORGAN, VESSEL, LESION = 1, 2, 3
SUPERSAMPLING = 4  # thin slices drawn per thick slice (partial volume along the coarse axis)
# Mean intensity per tissue (rows: body, organ, vessel, lesion, cyst) and channel (columns).
_TISSUE_MEANS = np.array([
    [100.0, 90.0],
    [135.0, 105.0],
    [230.0, 80.0],
    [120.0, 165.0],
    [70.0, 170.0],
])
_BODY, _CYST = 0, 4


def case_geometry(index: int, seed: int = 0) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(shape, spacing in mm) of case `index`: ~96 x 96 x 24 voxels of ~0.7 x 0.7 x 4 mm."""
    rng = np.random.default_rng([seed, index, 1])
    inplane = int(rng.integers(88, 105))
    shape = (inplane, inplane + int(rng.integers(-4, 5)), int(rng.integers(22, 27)))
    pixel = round(float(rng.uniform(0.65, 0.75)), 3)
    return shape, (pixel, pixel, round(float(rng.uniform(3.6, 4.4)), 2))


def _tube_distance(points, curve: np.ndarray) -> np.ndarray:
    """Distance (mm) from each point of the open `points` grids to the polyline `curve` (N, 3)."""
    best = None
    for a, b in zip(curve[:-1], curve[1:]):
        ab = b - a
        t = sum((g - ai) * di for g, ai, di in zip(points, a, ab)) / float(ab @ ab)
        t = np.clip(t, 0.0, 1.0)
        d2 = sum((g - ai - t * di) ** 2 for g, ai, di in zip(points, a, ab))
        best = d2 if best is None else np.minimum(best, d2)
    return np.sqrt(best)


def _vessel_curve(rng, extent: np.ndarray, organ_centre: np.ndarray) -> np.ndarray:
    """A smooth path from the bottom slice to the top one, passing by the organ's side."""
    z = np.linspace(-0.55, 0.55, 40) * extent[2]
    side = rng.choice([-1.0, 1.0]) * rng.uniform(12.0, 18.0)
    phase, amplitude = rng.uniform(0, 2 * np.pi, 2), rng.uniform(3.0, 7.0, 2)
    x = organ_centre[0] + side + amplitude[0] * np.sin(2 * np.pi * z / extent[2] + phase[0])
    y = organ_centre[1] + amplitude[1] * np.sin(3 * np.pi * z / extent[2] + phase[1])
    return np.stack([x, y, z], axis=1)


def _smooth_field(rng, shape, cells: int = 6) -> np.ndarray:
    """A smooth random field of `shape`, values about -1..1."""
    from scipy import ndimage

    coarse = rng.standard_normal(tuple(max(3, n * cells // 96) for n in shape))
    field = ndimage.zoom(ndimage.gaussian_filter(coarse, 1.0), [n / c for n, c in zip(shape, coarse.shape)],
                         order=1)[tuple(slice(0, n) for n in shape)]
    return field / max(float(np.abs(field).max()), 1e-6)


def _tissues(rng, shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """(tissue index, label) on the thin-slice grid of a case of `shape` voxels of `spacing`."""
    fine = (shape[0], shape[1], shape[2] * SUPERSAMPLING)
    step = (spacing[0], spacing[1], spacing[2] / SUPERSAMPLING)
    grids = np.ix_(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(fine, step)])
    extent = np.array(shape) * np.array(spacing)
    body = ellipsoid(grids[:2], (0.0, 0.0), extent[:2] * rng.uniform(0.44, 0.48, 2))
    body = np.broadcast_to(body, fine)  # a cylinder through every slice
    organ_centre = np.array([*rng.uniform(-4.0, 4.0, 2), rng.uniform(-0.1, 0.1) * extent[2]])
    organ_radius = np.array([*rng.uniform(15.0, 20.0, 2), rng.uniform(0.28, 0.38) * extent[2]])
    organ = ellipsoid(grids, organ_centre, organ_radius)
    tissue = np.where(body, _BODY, -1)
    label = np.zeros(fine, np.uint8)
    tissue[organ], label[organ] = ORGAN, ORGAN
    for _ in range(int(rng.integers(2, 5))):  # cysts: outside the organ, inside the body
        angle = rng.uniform(0, 2 * np.pi)
        where = np.array([np.cos(angle) * rng.uniform(22.0, 27.0), np.sin(angle) * rng.uniform(22.0, 27.0),
                          rng.uniform(-0.3, 0.3) * extent[2]])
        cyst = ellipsoid(grids, where, rng.uniform(3.5, 5.5, 3)) & body & ~organ
        tissue[cyst] = _CYST
    for _ in range(int(rng.integers(1, 4))):  # lesions: well inside the organ
        where = organ_centre + rng.uniform(-0.5, 0.5, 3) * organ_radius
        lesion = ellipsoid(grids, where, [*rng.uniform(4.0, 6.0, 2), rng.uniform(4.5, 6.5)]) & organ
        tissue[lesion], label[lesion] = LESION, LESION
    vessel = (_tube_distance(grids, _vessel_curve(rng, extent, organ_centre)) <= rng.uniform(1.0, 1.5)) & body
    tissue[vessel], label[vessel] = VESSEL, VESSEL
    return tissue, label


def hard_case(index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (X, Y, Z, 2) int16, label (X, Y, Z) uint8, affine) of case `index`; Z is the thick axis."""
    rng = np.random.default_rng([seed, index, 2])
    shape, spacing = case_geometry(index, seed)
    tissue, fine_label = _tissues(rng, shape, spacing)
    thick = (*shape, SUPERSAMPLING)

    # Labels: the class with the largest share of each thick voxel (ties: the higher label).
    shares = np.stack([(fine_label == v).reshape(thick).sum(-1) for v in sorted(LABELS)], axis=-1)
    label = (len(LABELS) - 1 - np.argmax(shares[..., ::-1], axis=-1)).astype(np.uint8)
    inside = (tissue >= 0).reshape(thick).mean(-1) >= 0.5

    image = np.zeros((*shape, len(MODALITIES)), np.int16)
    texture = _smooth_field(rng, tissue.shape)
    for ch in range(len(MODALITIES)):
        scale = rng.uniform(3.0, 6.0)
        means = np.where(tissue >= 0, _TISSUE_MEANS[np.maximum(tissue, 0), ch], 0.0)
        fine = means * (1.0 + 0.08 * texture) * (1.0 + 0.15 * _smooth_field(rng, tissue.shape, cells=2))
        value = fine.reshape(thick).mean(-1) * scale  # the slice profile: thin slices averaged
        value += rng.standard_normal(shape).astype(np.float32) * (14.0 * scale)
        image[..., ch] = np.where(inside, np.clip(np.rint(value), 1, 32767), 0)
    label[~inside] = 0
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(spacing)
    return image, label, affine


def case_ids(n_cases: int) -> list[str]:
    return [f"VESSEL_{i:03d}" for i in range(n_cases)]


def generate_hard_dataset(root: str | Path, n_cases: int, seed: int = 0, workers: int = 1) -> Path:
    """Write the accuracy benchmark's dataset in MSD layout under `root`; dataset.json last."""
    return write_generated_dataset(root, hard_case, case_ids(n_cases), seed, NAME, MODALITIES, LABELS, workers)
