"""Preprocessing benchmark: our validate + fingerprint + plan + preprocess against nnU-Net v2's
`nnUNetv2_plan_and_preprocess -c 3d_fullres --verify_dataset_integrity` on the same cases.

The dataset is generated here: BraTS-like 4-channel MRI (FLAIR, T1w, T1gd, T2w; int16 voxels,
zero outside an ellipsoidal head, grey/white texture, bias field, noise, a tumour of three nested
labels), 120-180 voxels per axis, spacing about 1 x 1 x 1.2 mm varying per case (so most cases
are resampled), stored in BraTS's LPS voxel order. It is written once in MSD layout (ours) and
converted to nnU-Net v2's raw layout (one file per channel).

Each side runs as a fresh process with `cores` worker processes, so both wall times include
interpreter start-up and imports:

- ours: this module with `--run-ours`: `prepare_dataset`'s checks, `compute_fingerprint`,
  `make_plans`, then `preprocess_case` per case in a pool of `cores` processes (what the rules do,
  one job per case);
- nnU-Net: its CLI from its own virtualenv (`unet.bench.reference_env`) with `-np` and `-npfp`
  set to `cores`; its stages are timed from the moments its progress messages appear.

Its .b2nd outputs are read by this module with `--read-nnunet` in the nnU-Net virtualenv (which
has blosc2) and saved as .npy. nnU-Net's arrays are (C, z, y, x) in file order (SimpleITK)
transposed by the plans' `transpose_forward`; ours (X, Y, Z, C) in canonical RAS order. The axis
mapping between them is found on the first case among the 48 permutations/flips (checked against
the one the two conventions predict) and reused for all cases.

    python -m unet.bench.preprocess --cases 8 --cores 2 --out preprocess.json

Only numpy and the standard library are imported at module level: the module also runs inside
the nnU-Net virtualenv.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
NAME = "BenchBrain"
DATASET_ID = 555
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
GOAL_RATIO = 0.5
GOAL_CORRELATION = 0.99
SPACING_TOLERANCE = 1e-4  # NIfTI headers hold float32 spacings; the two readers round differently


# --- the generated dataset --------------------------------------------------------------------

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
    head = _ellipsoid(grids, np.zeros(3), head_radius)
    brain = _ellipsoid(grids, np.zeros(3), head_radius * 0.85)
    radius = rng.uniform(15.0, 25.0) * rng.uniform(0.85, 1.15, size=3)
    room = np.maximum(head_radius * 0.85 / np.sqrt(3) - radius * 0.5, 0.0)
    centre = rng.uniform(-room, room)
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius))
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


def _ellipsoid(grids, centre, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def case_ids(n_cases: int) -> list[str]:
    return [f"BRAIN_{i:03d}" for i in range(n_cases)]


def _write_case(args) -> None:
    from unet.io.nifti import save_nifti

    root, index, cid, seed = args
    image, label, affine = synthesize_case(index, seed)
    save_nifti(root / "imagesTr" / f"{cid}.nii.gz", image, affine)
    save_nifti(root / "labelsTr" / f"{cid}.nii.gz", label, affine)


def generate_dataset(root: str | Path, n_cases: int, seed: int = 0, workers: int = 1) -> Path:
    """Write the benchmark dataset in MSD layout under `root`; dataset.json last."""
    from concurrent.futures import ProcessPoolExecutor

    from unet.io.msd import write_dataset_json

    root = Path(root)
    ids = case_ids(n_cases)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(_write_case, [(root, i, cid, seed) for i, cid in enumerate(ids)]))
    write_dataset_json(root, NAME, list(MODALITIES), LABELS, ids, [])
    return root


def _convert_case(args) -> None:
    import nibabel as nib

    from unet.io.nifti import save_nifti

    case, images_dir, labels_dir, ending = args
    img = nib.load(str(case.image))
    data = np.asanyarray(img.dataobj)  # stored dtype: no scaling in these files
    data = data[..., None] if data.ndim == 3 else data
    for c in range(data.shape[-1]):
        save_nifti(images_dir / f"{case.id}_{c:04d}{ending}", data[..., c], img.affine)
    shutil.copyfile(case.label, labels_dir / f"{case.id}{ending}")


def to_nnunet_raw(msd_root: str | Path, raw_root: str | Path, dataset_id: int = DATASET_ID,
                  workers: int = 1) -> Path:
    """Convert an MSD-layout dataset to nnU-Net v2's raw layout under `raw_root`:
    Dataset{id:03d}_{name}/imagesTr/{case}_{channel:04d}.nii.gz, labelsTr/{case}.nii.gz and a v2
    dataset.json (channel_names, labels by name, numTraining, file_ending). Returns that folder."""
    from concurrent.futures import ProcessPoolExecutor

    from unet.io.atomic import write_json
    from unet.io.msd import load_dataset

    dataset = load_dataset(msd_root)
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{dataset.name}"
    images, labels = folder / "imagesTr", folder / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    ending = ".nii.gz"
    jobs = [(case, images, labels, ending) for case in dataset.training]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(_convert_case, jobs))
    write_json(folder / "dataset.json", {
        "name": dataset.name,
        "channel_names": {str(i): m for i, m in enumerate(dataset.modalities)},
        "labels": {name: value for value, name in sorted(dataset.labels.items())},
        "numTraining": len(dataset.training),
        "file_ending": ending,
    })
    return folder


# --- running both sides -----------------------------------------------------------------------

def _preprocess_one(args):
    from unet.preprocessing.preprocess import preprocess_case

    case, plan, out_dir = args
    return preprocess_case(case, plan, out_dir)


def run_ours(data_dir: str | Path, out_dir: str | Path, cores: int) -> dict:
    """Our stages as the rules run them; writes fingerprint.json, plans.json, preprocessed/ under
    `out_dir` and returns stage times (s), the target spacing and the shape per case."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from unet.io.atomic import write_json
    from unet.io.datasets import prepare_dataset
    from unet.preprocessing.fingerprint import compute_fingerprint
    from unet.preprocessing.planning import Plan, make_plans

    out_dir, times = Path(out_dir), {}
    start = time.perf_counter()
    # A user's folder: the checks only (every voxel is read, as nnU-Net's --verify_dataset_integrity).
    dataset = prepare_dataset(Path(data_dir).name, data_dir, workers=cores)
    times["validate"] = time.perf_counter() - start
    write_json(out_dir / "fingerprint.json", compute_fingerprint(dataset, workers=cores))
    times["fingerprint"] = time.perf_counter() - start - sum(times.values())
    write_json(out_dir / "plans.json", make_plans(json.loads((out_dir / "fingerprint.json").read_text())))
    plan = Plan.load(out_dir / "plans.json")
    times["plan"] = time.perf_counter() - start - sum(times.values())
    jobs = [(case, plan, out_dir / "preprocessed") for case in dataset.training]
    with ProcessPoolExecutor(max_workers=max(1, cores)) as pool:
        geometries = list(tqdm(pool.map(_preprocess_one, jobs), total=len(jobs), desc="preprocess",
                               unit="case"))
    times["preprocess"] = time.perf_counter() - start - sum(times.values())
    return {"stages": times, "spacing": list(plan.spacing),
            "shapes": {g.case: list(g.resampled_shape) for g in geometries}}


def run_nnunet(python: str | Path, raw_root: Path, work_dir: Path, dataset_id: int, cores: int,
               log: Path) -> dict:
    """`nnUNetv2_plan_and_preprocess` in a fresh process; wall time and stage times (s)."""
    env = {**os.environ, "nnUNet_raw": str(raw_root),
           "nnUNet_preprocessed": str(work_dir / "nnUNet_preprocessed"),
           "nnUNet_results": str(work_dir / "nnUNet_results"), "PYTHONUNBUFFERED": "1"}
    cmd = [str(Path(python).parent / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id),
           "-c", "3d_fullres", "-np", str(cores), "-npfp", str(cores), "--verify_dataset_integrity",
           "--no_pbar"]
    # Each message ends the stage named here (verify_dataset_integrity runs before the fingerprint).
    markers = {"Fingerprint extraction...": "startup", "verify_dataset_integrity Done.": "validate",
               "Experiment planning...": "fingerprint", "Preprocessing...": "plan"}
    stages, last = {}, 0.0
    start = time.perf_counter()
    with open(log, "w") as out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            out.write(line)
            stage = markers.get(line.strip())
            if stage:
                now = time.perf_counter() - start
                stages[stage], last = now - last, now
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    stages["preprocess"] = wall - last
    return {"wall": wall, "stages": stages, "command": " ".join(["nnUNetv2_plan_and_preprocess"] + cmd[1:])}


def read_nnunet_outputs(preprocessed: str | Path, out_dir: str | Path) -> None:
    """In the nnU-Net virtualenv (which has blosc2): each case's .b2nd image, (C, ...) float32,
    saved as {case}.npy in `out_dir`."""
    import blosc2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(preprocessed).glob("*.b2nd")):
        if not path.name.endswith("_seg.b2nd"):
            np.save(out_dir / f"{path.name[:-len('.b2nd')]}.npy", blosc2.open(urlpath=str(path), mode="r")[:],
                    allow_pickle=False)


def _run_module(python, args: list[str], log: Path) -> float:
    """This module in a fresh `python` process, output to `log`; its wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([str(python), "-m", "unet.bench.preprocess", *args], env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} -m unet.bench.preprocess {' '.join(args)} failed "
                           f"(exit {proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


# --- matching axes and comparing --------------------------------------------------------------

@dataclass(frozen=True)
class AxisMapping:
    """Output spatial axis i is input axis perm[i], reversed where flips[i]; axes after the
    three spatial ones are carried along."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def apply(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.perm + tuple(range(3, array.ndim)))
        return np.flip(out, [i for i, f in enumerate(self.flips) if f]) if any(self.flips) else out

    def to_json(self) -> dict:
        return {"perm": list(self.perm), "flips": list(self.flips)}


def expected_mapping(to_canonical, transpose_forward) -> AxisMapping:
    """nnU-Net's axes -> ours, as the conventions predict: nnU-Net axis t is file axis
    2 - transpose_forward[t] (SimpleITK reverses the axes); file axis r is our canonical axis
    to_canonical[r][0], reversed where to_canonical[r][1] is -1 (a nibabel orientation)."""
    perm, flips = [0, 0, 0], [False, False, False]
    for r, (axis, flip) in enumerate(to_canonical):
        perm[int(axis)] = list(transpose_forward).index(2 - r)
        flips[int(axis)] = flip < 0
    return AxisMapping(tuple(perm), tuple(flips))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Voxelwise Pearson correlation (float64); NaN when either array is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else float("nan")


def find_mapping(ours: np.ndarray, theirs: np.ndarray) -> tuple[AxisMapping, float] | None:
    """The permutation/flips of `theirs` (3D) that best matches `ours` (3D), by correlation, among
    the 48 whose shape agrees; None when no permutation gives `ours`' shape."""
    best = None
    for perm in itertools.permutations(range(3)):
        if tuple(theirs.shape[p] for p in perm) != ours.shape:
            continue
        for flips in itertools.product((False, True), repeat=3):
            mapping = AxisMapping(perm, flips)
            score = pearson(mapping.apply(theirs), ours)
            if best is None or score > best[1]:
                best = (mapping, score)
    return best


def compare_case(case: str, ours: np.ndarray, theirs: np.ndarray, mapping: AxisMapping) -> dict:
    """One case: `ours` (X, Y, Z, C), `theirs` nnU-Net's (C, ...) brought to our axes by
    `mapping`; shapes and per-channel correlations (None where the shapes differ)."""
    theirs = mapping.apply(np.moveaxis(theirs, 0, -1))
    match = theirs.shape == ours.shape
    return {"case": case, "shape_ours": list(ours.shape[:3]), "shape_nnunet": list(theirs.shape[:3]),
            "shapes_match": match,
            "correlation": [pearson(ours[..., c], theirs[..., c]) for c in range(ours.shape[-1])]
            if match else None,
            "max_abs_difference": float(np.abs(ours - theirs).max()) if match else None}


def build_report(ours: dict, nnunet: dict, spacing_nnunet: list[float], cases: list[dict],
                 mapping: dict, cores: int, settings: dict) -> dict:
    """The benchmark's JSON: times, ratio, spacings, shapes, correlations and the goals' verdicts.

    `ours`/`nnunet`: {"wall": s, "stages": {name: s}} (ours also "spacing"); `spacing_nnunet`
    already in our axis order; `cases`: compare_case results."""
    ratio = ours["wall"] / nnunet["wall"]
    spacing_match = len(ours["spacing"]) == len(spacing_nnunet) and all(
        abs(a - b) <= SPACING_TOLERANCE * max(1.0, abs(b)) for a, b in zip(ours["spacing"], spacing_nnunet))
    correlations = [r for c in cases for r in (c["correlation"] or [])]
    min_corr = min(correlations) if correlations else None
    shapes_match = all(c["shapes_match"] for c in cases) and bool(cases)
    return {
        **settings, "cores": cores,
        "ours": {"wall_s": ours["wall"], "stages_s": ours["stages"]},
        "nnunet": {"wall_s": nnunet["wall"], "stages_s": nnunet["stages"],
                   **({"command": nnunet["command"]} if "command" in nnunet else {})},
        "ratio": ratio,
        "spacing": {"ours": list(ours["spacing"]), "nnunet": list(spacing_nnunet), "match": spacing_match},
        "axis_mapping": mapping,
        "cases": cases,
        "min_correlation": min_corr,
        "goals": {
            f"ratio <= {GOAL_RATIO}": ratio <= GOAL_RATIO,
            "same spacing": spacing_match,
            "same shapes": shapes_match,
            f"correlation >= {GOAL_CORRELATION}": min_corr is not None and shapes_match
            and min_corr >= GOAL_CORRELATION,
        },
    }


def format_report(report: dict) -> str:
    def stages(d):
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items())

    lines = [
        f"preprocessing benchmark: {report.get('n_cases', len(report['cases']))} cases, "
        f"{report['cores']} cores",
        f"  ours    {report['ours']['wall_s']:7.1f} s  ({stages(report['ours']['stages_s'])})",
        f"  nnU-Net {report['nnunet']['wall_s']:7.1f} s  ({stages(report['nnunet']['stages_s'])})",
        f"  ratio ours / nnU-Net {report['ratio']:.3f} (goal <= {GOAL_RATIO})",
        f"  target spacing: ours {_fmt(report['spacing']['ours'])}, nnU-Net (our axes) "
        f"{_fmt(report['spacing']['nnunet'])}, {'match' if report['spacing']['match'] else 'DIFFER'}",
        f"  axis mapping nnU-Net -> ours: {report['axis_mapping']}",
        f"  {'case':<12} {'shape ours':<16} {'shape nnU-Net':<16} correlation per channel",
    ]
    for c in report["cases"]:
        corr = " ".join(f"{r:.5f}" for r in c["correlation"]) if c["correlation"] else "-"
        lines.append(f"  {c['case']:<12} {'x'.join(map(str, c['shape_ours'])):<16} "
                     f"{'x'.join(map(str, c['shape_nnunet'])):<16} {corr}"
                     f"{'' if c['shapes_match'] else '  SHAPES DIFFER'}")
    if report["min_correlation"] is not None:
        lines.append(f"  lowest correlation {report['min_correlation']:.6f} (goal >= {GOAL_CORRELATION})")
    if "load_average_before" in report:
        lines.append(f"  measured {report['date']}; 1-min load average {report['load_average_before'][0]:.1f} "
                     f"before, {report['load_average_after'][0]:.1f} after")
    lines.append("  goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["goals"].items()))
    return "\n".join(lines)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


# --- the whole benchmark ----------------------------------------------------------------------

def run_benchmark(n_cases: int = 8, cores: int = 2, seed: int = 0, nnunet_python_path=None,
                  work_dir: str | Path | None = None, out: str | Path | None = None) -> dict:
    """Generate, run both sides, compare; write the report to `out` (JSON) if given."""
    from unet.io.atomic import write_json

    if nnunet_python_path is None:
        from unet.bench.reference_env import nnunet_python

        nnunet_python_path = nnunet_python()
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        shutil.rmtree(work / "nnUNet_preprocessed", ignore_errors=True)
        start = time.perf_counter()
        msd = generate_dataset(work / "msd" / NAME, n_cases, seed, workers=cores)
        raw = to_nnunet_raw(msd, work / "nnUNet_raw", DATASET_ID, workers=cores)
        print(f"generated {n_cases} cases in {time.perf_counter() - start:.1f} s under {work}", flush=True)

        # Other work on the machine slows both sides: the load average says how busy it was.
        load_before, date = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        ours_dir = work / "ours"
        shutil.rmtree(ours_dir, ignore_errors=True)
        ours_dir.mkdir(parents=True)
        wall = _run_module(sys.executable, ["--run-ours", str(msd), str(ours_dir), "--cores", str(cores)],
                           log=work / "ours.log")
        ours = {"wall": wall, **json.loads((ours_dir / "result.json").read_text())}
        print(f"ours: {wall:.1f} s", flush=True)
        nnunet = run_nnunet(nnunet_python_path, raw.parent, work, DATASET_ID, cores, work / "nnunet.log")
        print(f"nnU-Net: {nnunet['wall']:.1f} s", flush=True)

        pre = work / "nnUNet_preprocessed" / raw.name
        _run_module(nnunet_python_path, ["--read-nnunet", str(pre / "nnUNetPlans_3d_fullres"),
                                         str(work / "nnunet_npy")], log=work / "read_nnunet.log")
        settings = {"n_cases": n_cases, "seed": seed, "voxel_order": AXCODES,
                    "date": date,
                    "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
        report = compare_outputs(ours, nnunet, ours_dir, pre, work / "nnunet_npy", cores, settings)
    if out is not None:
        write_json(out, report)
    return report


def compare_outputs(ours: dict, nnunet: dict, ours_dir: Path, nnunet_pre: Path, nnunet_npy: Path,
                    cores: int, settings: dict) -> dict:
    """Load both sides' outputs, find the axis mapping on the first case, compare every case."""
    from unet.io.atomic import load_npy
    from unet.preprocessing.geometry import CaseGeometry

    plans = json.loads((nnunet_pre / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    ids = sorted(ours["shapes"])
    first = CaseGeometry.load(ours_dir / "preprocessed" / f"{ids[0]}.json")
    expected = expected_mapping(first.reorientation.to_canonical, plans["transpose_forward"])
    mine = load_npy(ours_dir / "preprocessed" / f"{ids[0]}.npy")
    theirs = load_npy(nnunet_npy / f"{ids[0]}.npy")
    found = find_mapping(mine[..., 0], theirs[0])
    mapping = found[0] if found else expected
    info = {**mapping.to_json(), "expected": expected.to_json(),
            "agrees_with_expected": mapping == expected,
            "found_on": ids[0], "score": found[1] if found else None}
    cases = []
    for cid in ids:
        cases.append(compare_case(cid, load_npy(ours_dir / "preprocessed" / f"{cid}.npy"),
                                  load_npy(nnunet_npy / f"{cid}.npy"), mapping))
    spacing_nnunet = [float(config["spacing"][p]) for p in mapping.perm]
    return build_report(ours, nnunet, spacing_nnunet, cases, info, cores, {
        **settings, "nnunet_normalization": config["normalization_schemes"],
        "nnunet_use_mask_for_norm": config["use_mask_for_norm"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--nnunet-python", help="python of an nnU-Net v2 virtualenv (default: "
                                                "unet.bench.reference_env's, made on first use)")
    parser.add_argument("--run-ours", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--read-nnunet", nargs=2, metavar=("PREPROCESSED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_ours:  # the timed process of our side
        result = run_ours(args.run_ours[0], args.run_ours[1], args.cores)
        (Path(args.run_ours[1]) / "result.json").write_text(json.dumps(result, indent=1))
        return 0
    if args.read_nnunet:  # runs in the nnU-Net virtualenv
        read_nnunet_outputs(*args.read_nnunet)
        return 0
    report = run_benchmark(args.cases, args.cores, args.seed, args.nnunet_python, args.keep, args.out)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
