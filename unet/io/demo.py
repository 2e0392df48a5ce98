"""The built-in demo dataset: small synthetic brain-tumour-like volumes in MSD layout.

Each case is a noisy ellipsoidal "head" with a tumour of three nested labels, as in
MSD Task01 (BraTS): 1 edema (outer), 3 enhancing rim, 2 non-enhancing core (inner).
Two channels carry the contrast: a FLAIR-like one where edema and tumour are bright,
and a T1-gadolinium-like one where only the enhancing rim is bright. Voxel spacing
(some anisotropic), voxel order in the affine, intensity scale, bias and noise vary per
case, so the pipeline's reorientation, resampling and normalization all have work to do.
Everything derives from `seed` and the case index: the same call writes the same files.
It lives in `unet.io` beside the other dataset sources (`download`, `brats`), which
`unet.io.datasets` chooses between.
"""

from __future__ import annotations

from pathlib import Path

import nibabel.orientations as nio
import numpy as np

from unet.io.images import NIFTI, save_image
from unet.io.msd import write_dataset_json

MODALITIES = ["FLAIR", "T1gd"]
LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumour", 3: "enhancing tumour"}
# BraTS-style regions (unions of label values, scored as one structure), written to dataset.json.
REGIONS = {"whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]}
# Mean intensity per tissue (background-of-head, edema, core, rim) for each channel.
_TISSUE_MEANS = np.array([
    [100.0, 185.0, 165.0, 175.0],  # FLAIR-like
    [100.0, 85.0, 55.0, 230.0],    # T1gd-like
])
_SPACINGS = [(1.0, 1.0, 1.0), (1.2, 1.2, 1.2), (0.9, 0.9, 1.8), (1.0, 1.0, 1.0), (1.1, 1.1, 1.1),
             (1.0, 1.0, 2.2)]
_AXCODES = ["RAS", "LPS", "LAS", "PSR", "ASL", "RPI"]


def case_ids(n_train: int = 12, n_test: int = 2) -> tuple[list[str], list[str]]:
    ids = [f"DEMO_{i:03d}" for i in range(n_train + n_test)]
    return ids[:n_train], ids[n_train:]


def synthesize_case(index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (image (X,Y,Z,2) float32, label (X,Y,Z) uint8, affine) of one case, raw voxel order."""
    rng = np.random.default_rng([seed, index])
    spacing = np.array(_SPACINGS[rng.integers(len(_SPACINGS))])
    shape = tuple(int(s) for s in rng.integers(40, 65, size=3))
    # Physical coordinates (mm) of voxel centres, origin at the volume centre.
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * sp for n, sp in zip(shape, spacing)],
                        indexing="ij")
    extent = np.array(shape) * spacing

    head = _ellipsoid(grids, np.zeros(3), extent * rng.uniform(0.40, 0.46, size=3))
    radius = min(rng.uniform(14.0, 19.0), 0.33 * extent.min()) * rng.uniform(0.85, 1.15, size=3)
    room = np.maximum(extent * 0.42 - radius - 2.0, 0.0)
    centre = rng.uniform(-room, room)
    edema = _ellipsoid(grids, centre, radius)
    core = _ellipsoid(grids, centre, radius * 0.65)
    necrosis = _ellipsoid(grids, centre, np.maximum(radius * 0.65 - 3.0, 1.0))

    label = np.zeros(shape, np.uint8)
    label[edema] = 1
    label[core] = 3
    label[necrosis] = 2
    label[~head] = 0

    tissue = np.where(head, 0, -1)
    tissue[label == 1], tissue[label == 2], tissue[label == 3] = 1, 2, 3
    image = np.zeros(shape + (len(MODALITIES),), np.float32)
    for ch in range(len(MODALITIES)):
        means = _TISSUE_MEANS[ch] * rng.uniform(0.7, 1.4)
        bias = 1.0 + 0.1 * sum(g / e * rng.uniform(-1, 1) for g, e in zip(grids, extent))
        noisy = means[np.clip(tissue, 0, None)] * bias + rng.normal(0, 6.0, shape) * means[0] / 100
        image[..., ch] = np.where(head, np.maximum(noisy, 1.0), 0.0)

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing + rng.uniform(-20, 20, size=3)
    return _reorient(image, label, affine, _AXCODES[rng.integers(len(_AXCODES))])


def _ellipsoid(grids, centre, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def _reorient(image, label, affine_ras, axcodes):
    """Store the RAS-ordered arrays in another voxel order, with the affine that says so."""
    transform = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(axcodes))
    new_affine = affine_ras @ nio.inv_ornt_aff(transform, label.shape)
    return (nio.apply_orientation(image, transform).astype(np.float32),
            nio.apply_orientation(label, transform).astype(np.uint8), new_affine)


def generate_demo(root: str | Path, n_train: int = 12, n_test: int = 2, seed: int = 0,
                  file_ending: str = NIFTI) -> Path:
    """Write the demo dataset in MSD layout under `root`, its files in the format of `file_ending`
    (`unet.io.images.FILE_ENDINGS`, recorded in dataset.json); dataset.json is written last."""
    root = Path(root)
    train_ids, test_ids = case_ids(n_train, n_test)
    for index, cid in enumerate(train_ids + test_ids):
        image, label, affine = synthesize_case(index, seed)
        if cid in train_ids:
            save_image(root / "imagesTr" / f"{cid}{file_ending}", image, affine)
            save_image(root / "labelsTr" / f"{cid}{file_ending}", label, affine)
        else:
            save_image(root / "imagesTs" / f"{cid}{file_ending}", image, affine)
    write_dataset_json(root, "demo", MODALITIES, LABELS, train_ids, test_ids,
                       extra={"regions": REGIONS}, file_ending=file_ending)
    return root
