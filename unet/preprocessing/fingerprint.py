"""Dataset fingerprint: spacings, shapes and foreground intensity statistics per channel."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm

from unet.io.atomic import write_json
from unet.io.msd import Case, Dataset, load_dataset
from unet.preprocessing.cropping import crop, nonzero_box
from unet.preprocessing.loading import load_case

SAMPLES_PER_CASE = 10_000  # foreground voxels per case kept for intensity statistics


def _case_fingerprint(args: tuple[Case, int, int]) -> dict:
    case, n_channels, seed = args
    loaded = load_case(case, n_channels)
    box = nonzero_box(loaded.image)
    image = crop(loaded.image, box)
    label = crop(loaded.label, box)
    fg = image[label > 0]  # (N, C)
    rng = np.random.default_rng(seed)
    if len(fg) > SAMPLES_PER_CASE:
        fg = fg[rng.choice(len(fg), SAMPLES_PER_CASE, replace=False)]
    return {
        "id": case.id,
        "spacing": [float(s) for s in loaded.spacing],
        "shape": [int(n) for n in loaded.image.shape[:3]],
        "shape_after_crop": [int(hi - lo) for lo, hi in box],
        "crop_fraction": float(np.prod([hi - lo for lo, hi in box]) / np.prod(loaded.image.shape[:3])),
        "label_values": sorted(int(v) for v in np.unique(loaded.label)),
        "_foreground": fg,
    }


def _intensity_stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {k: None for k in ("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5")}
    return {
        "mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
        "min": float(values.min()), "max": float(values.max()),
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
    }


def compute_fingerprint(dataset: Dataset, workers: int = 1, seed: int = 0) -> dict:
    """Fingerprint of the training cases, in canonical axis order."""
    n_channels = len(dataset.modalities)
    jobs = [(case, n_channels, seed + i) for i, case in enumerate(dataset.training)]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        cases = list(tqdm(pool.map(_case_fingerprint, jobs), total=len(jobs), desc="fingerprint",
                          unit="case"))
    declared = set(dataset.labels)
    for case, fp in zip(dataset.training, cases):
        undeclared = set(fp["label_values"]) - declared
        if undeclared:
            raise ValueError(f"{case.label}: label values {sorted(undeclared)} are not declared "
                             f"in dataset.json 'labels' {sorted(declared)}")
    foreground = np.concatenate([c.pop("_foreground") for c in cases], axis=0)
    return {
        "dataset": dataset.name,
        "modalities": list(dataset.modalities),
        "labels": {str(k): v for k, v in sorted(dataset.labels.items())},
        "cases": cases,
        "intensity": [_intensity_stats(foreground[:, c]) for c in range(n_channels)],
    }


def write_fingerprint(data_dir: str | os.PathLike, out: str | os.PathLike, workers: int = 1) -> dict:
    """Rule `fingerprint`: `compute_fingerprint` of the dataset in `data_dir`, written to `out`
    (fingerprint.json) and returned."""
    fingerprint = compute_fingerprint(load_dataset(data_dir), workers=workers)
    write_json(out, fingerprint)
    return fingerprint
