"""The benchmarks' generated cases: no benchmark reads a real dataset, so every figure can be
reproduced from a seed on any machine.

- `synthesize_case` / `generate_dataset` (preprocessing benchmark): BraTS-like raw MRI in MSD
  layout: 4 channels (FLAIR, T1w, T1gd, T2w), int16 voxels, zero outside an ellipsoidal head,
  grey/white texture, bias field, noise, a tumour of three nested labels, 120-180 voxels per axis,
  spacing about 1 x 1 x 1.2 mm varying per case (so most cases are resampled), stored in BraTS's
  LPS voxel order.
- `preprocessed_case` / `write_preprocessed_cases` (loader benchmark): what the preprocess stage
  writes (float32 channels, uint8 seg, foreground locations), with nested labels 1..3.
- `write_nifti_case` (memory benchmark): one BraTS-size float32 NIfTI case, labels 0, 1, 2, 4.
- `write_tiny_dataset` (start-up benchmark): many tiny one-channel cases in MSD layout, whose
  work is negligible beside a job's start-up.

Only numpy is imported at module level; nibabel and scipy where a case is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "BenchBrain"
MODALITIES = ("FLAIR", "T1w", "T1gd", "T2w")
LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}
AXCODES = "LPS"  # BraTS's voxel order: a flip of x and y away from our canonical RAS
# Mean intensity per tissue (rows: scalp, white matter, grey matter, edema, necrotic core,
# enhancing rim) and channel (columns: FLAIR, T1w, T1gd, T2w), before a per-case scale.
_TISSUE_MEANS = np.array([
    [60.0, 120.0, 125.0, 70.0],
    [90.0, 110.0, 110.0, 70.0],
    [110.0, 80.0, 82.0, 95.0],
    [190.0, 70.0, 72.0, 170.0],
    [120.0, 50.0, 52.0, 200.0],
    [160.0, 75.0, 230.0, 140.0],
])
NESTED_LABELS = 3  # the loader benchmark's labels 1..3, each inside the previous one
MEMORY_LABEL_VALUES = (0, 1, 2, 4)  # as in BraTS


def squared_distance(grids, centre, radii) -> np.ndarray:
    """Sum over axes of ((x - centre) / radius)^2 on open `grids`: <= 1 inside the ellipsoid."""
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))


def ellipsoid(grids, centre, radii) -> np.ndarray:
    return squared_distance(grids, centre, radii) <= 1.0


# --- raw BraTS-like MRI (preprocessing benchmark) ---------------------------------------------

def synthesize_case(index: int, seed: int = 0, axcodes: str = AXCODES):
    """(image (X, Y, Z, 4) int16, label (X, Y, Z) uint8, affine) of one case, in `axcodes` order."""
    import nibabel.orientations as nio
    from scipy import ndimage

    rng = np.random.default_rng([seed, index])
    inplane = round(float(rng.uniform(0.9, 1.1)), 3)
    spacing = np.array([inplane, inplane, round(float(rng.uniform(1.0, 1.5)), 3)])
    shape = tuple(int(n) for n in rng.integers(120, 181, size=3))
    grids = np.ix_(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)])
    extent = np.array(shape) * spacing
    head_radius = extent * rng.uniform(0.38, 0.44, size=3)
    head = ellipsoid(grids, np.zeros(3), head_radius)
    brain = ellipsoid(grids, np.zeros(3), head_radius * 0.85)
    radius = rng.uniform(15.0, 25.0) * rng.uniform(0.85, 1.15, size=3)
    room = np.maximum(head_radius * 0.85 / np.sqrt(3) - radius * 0.5, 0.0)
    centre = rng.uniform(-room, room)
    distance = squared_distance(grids, centre, radius)
    label = np.zeros(shape, np.uint8)
    label[distance <= 1.0] = 1
    label[distance <= 0.65 ** 2] = 3
    label[distance <= 0.4 ** 2] = 2
    label[~brain] = 0

    # Grey/white matter: a smooth random field, thresholded.
    coarse = ndimage.gaussian_filter(rng.standard_normal(tuple(max(4, n // 10) for n in shape)), 1.0)
    texture = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse.shape)], order=1)[
        tuple(slice(0, n) for n in shape)]
    tissue = np.where(brain, np.where(texture > 0, 2, 1), 0)
    for value, index_ in ((1, 3), (2, 4), (3, 5)):
        tissue[label == value] = index_

    image = np.zeros(shape + (len(MODALITIES),), np.int16)
    for ch in range(len(MODALITIES)):
        scale = rng.uniform(2.0, 8.0)
        bias = 1.0 + 0.15 * sum(g / e * rng.uniform(-1, 1) for g, e in zip(grids, extent))
        noise = rng.standard_normal(shape, dtype=np.float32) * (4.0 * scale)
        value = _TISSUE_MEANS[tissue, ch] * scale * bias + noise
        image[..., ch] = np.where(head, np.clip(np.rint(value), 1, 32767), 0)

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
    transform = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(axcodes))
    return (nio.apply_orientation(image, transform), nio.apply_orientation(label, transform),
            affine @ nio.inv_ornt_aff(transform, shape))


def case_ids(n_cases: int) -> list[str]:
    return [f"BRAIN_{i:03d}" for i in range(n_cases)]


def _write_generated_case(make_case, root: Path, seed: int, index: int, cid: str) -> None:
    from unet.io.nifti import save_nifti

    image, label, affine = make_case(index, seed)
    save_nifti(root / "imagesTr" / f"{cid}.nii.gz", image, affine)
    save_nifti(root / "labelsTr" / f"{cid}.nii.gz", label, affine)


def write_generated_dataset(root: str | Path, make_case, ids: list[str], seed: int, name: str,
                            modalities, labels, workers: int = 1) -> Path:
    """Write `make_case(index, seed)` -> (image, label, affine) for each of `ids` as a training
    set in MSD layout under `root`, `workers` processes at a time; dataset.json last."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from unet.io.msd import write_dataset_json

    root = Path(root)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(partial(_write_generated_case, make_case, root, seed), range(len(ids)), ids))
    write_dataset_json(root, name, list(modalities), labels, ids, [])
    return root


def generate_dataset(root: str | Path, n_cases: int, seed: int = 0, workers: int = 1) -> Path:
    """Write the preprocessing benchmark's dataset in MSD layout under `root`; dataset.json last."""
    return write_generated_dataset(root, synthesize_case, case_ids(n_cases), seed, NAME, MODALITIES, LABELS,
                                   workers)


# --- preprocessed cases (loader benchmark) ----------------------------------------------------

def preprocessed_case(shape, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A brain-tumour-like case: noisy channels, nested ellipsoids of labels 1..3 (uint8 seg)."""
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = [rng.uniform(0.3, 0.7) * n for n in shape]
    radius = [rng.uniform(0.08, 0.15) * n for n in shape]
    dist = squared_distance(grids, centre, radius)
    seg = np.zeros(shape, np.uint8)
    for label, extent in zip(range(1, NESTED_LABELS + 1), (1.0, 0.5, 0.2)):
        seg[dist <= extent] = label
    image = rng.standard_normal((*shape, channels), dtype=np.float32)
    image += seg[..., None].astype(np.float32) * rng.uniform(0.5, 1.5, channels).astype(np.float32)
    return image, seg


def write_preprocessed_cases(folder: Path, n_cases: int, shape, channels: int) -> list[str]:
    """Write `{case}.npy`, `{case}_seg.npy`, `{case}_fg.npy` as the preprocess stage does."""
    from unet.data.shards import locations_from_seg
    from unet.io.atomic import save_npy

    ids = []
    for i in range(n_cases):
        cid = f"case_{i:03d}"
        jitter = np.random.default_rng(1000 + i).integers(-10, 11, 3)
        image, seg = preprocessed_case(tuple(int(s + j) for s, j in zip(shape, jitter)), channels, seed=i)
        save_npy(folder / f"{cid}.npy", image)
        save_npy(folder / f"{cid}_seg.npy", seg)
        save_npy(folder / f"{cid}_fg.npy", locations_from_seg(seg, seed=i))
        ids.append(cid)
    return ids


# --- one raw NIfTI case (memory benchmark) ----------------------------------------------------

def write_nifti_case(root: str | Path, shape, spacing=(1.0, 1.0, 1.0), seed: int = 0):
    """Write a brain-like case (ellipsoid head, nested tumour labels, noise) under `root` in MSD
    layout and return its `Case`."""
    from unet.io.msd import Case
    from unet.io.nifti import save_nifti

    rng = np.random.default_rng(seed)
    spatial = shape[:3]
    grids = np.ogrid[tuple(slice(0, n) for n in spatial)]
    centre = [n / 2 for n in spatial]
    head = ellipsoid(grids, centre, [0.30 * n for n in spatial])
    image = np.zeros(tuple(spatial) + (shape[3],), np.float32)
    for c in range(shape[3]):
        channel = rng.normal(400 + 100 * c, 60, size=spatial).astype(np.float32)
        channel[~head] = 0
        image[..., c] = channel
    label = np.zeros(spatial, np.uint8)
    tumour_centre = [c + o for c, o in zip(centre, (10, -8, 5))]
    for value, scale in zip(MEMORY_LABEL_VALUES[1:], (0.12, 0.07, 0.03)):
        label[ellipsoid(grids, tumour_centre, [scale * n for n in spatial])] = value
    affine = np.diag(list(spacing) + [1.0])
    root = Path(root)
    save_nifti(root / "imagesTr" / "case_0.nii.gz", image, affine)
    save_nifti(root / "labelsTr" / "case_0.nii.gz", label, affine, dtype=np.uint8)
    return Case("case_0", root / "imagesTr" / "case_0.nii.gz", root / "labelsTr" / "case_0.nii.gz")


# --- tiny raw cases (start-up benchmark) ------------------------------------------------------

TINY_NAME = "TinyCases"


def write_tiny_dataset(root: str | Path, n_cases: int, shape=(16, 16, 16), seed: int = 0) -> Path:
    """`n_cases` one-channel cases of `shape` (int16 noise, a ball of label 1 brighter than the
    rest, 1 mm voxels) in MSD layout under `root`; dataset.json last."""
    from unet.io.msd import write_dataset_json
    from unet.io.nifti import save_nifti

    root, shape = Path(root), tuple(shape)
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    ids = [f"TINY_{i:04d}" for i in range(n_cases)]
    for cid in ids:
        label = ellipsoid(grids, rng.uniform(0.35, 0.65, 3) * shape, [n / 4 for n in shape]).astype(np.uint8)
        image = np.rint(rng.normal(100.0, 20.0, shape) + 100.0 * label).astype(np.int16)
        save_nifti(root / "imagesTr" / f"{cid}.nii.gz", image, np.eye(4))
        save_nifti(root / "labelsTr" / f"{cid}.nii.gz", label, np.eye(4))
    write_dataset_json(root, TINY_NAME, ["MRI"], {0: "background", 1: "ball"}, ids, [])
    return root
