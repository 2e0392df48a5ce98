"""Peak memory of one preprocessing job, against the case's raw float32 size.

Each measurement runs in a fresh subprocess, so its peak resident set size (ru_maxrss of
RUSAGE_CHILDREN) is that job's alone; a baseline subprocess that only imports the same modules
and loads nothing is subtracted. The case is a synthetic BraTS-size volume written as NIfTI
(`unet.bench.synthetic.write_nifti_case`).

    python -m unet.bench.memory [--shape 240 240 155 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# At module level, so the baseline child imports it too (see _CHILD).
from unet.bench.synthetic import MEMORY_LABEL_VALUES, write_nifti_case

BRATS_SHAPE = (240, 240, 155, 4)
# (name, voxel spacing of the case, target spacing of the plan)
SCENARIOS = (
    ("no resampling", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    ("resampling, separate z", (0.8, 0.8, 2.5), (1.0, 1.0, 1.5)),
)
def synthetic_plan(num_channels: int, target_spacing):
    """A plan that z-scores every channel inside the head and resamples to `target_spacing`."""
    from unet.preprocessing.normalization import ChannelNormalization
    from unet.preprocessing.plan import Plan

    return Plan(dataset="synthetic", modalities=tuple(f"ch{c}" for c in range(num_channels)),
                labels={v: f"label {v}" for v in MEMORY_LABEL_VALUES}, spacing=tuple(target_spacing),
                patch_size=(128, 128, 128), batch_size=2, filters=(32,), strides=((1, 1, 1),),
                kernels=((3, 3, 3),),
                normalization=(ChannelNormalization("zscore", use_mask=True),) * num_channels)


# Run in the child: import what a preprocessing job imports, then (unless baseline) preprocess.
_CHILD = """
import json, sys, time
from pathlib import Path
from unet.io.msd import Case
from unet.bench.memory import synthetic_plan
from unet.preprocessing.preprocess import preprocess_case
args = json.loads(sys.argv[1])
if args["run"]:
    case = Case(args["id"], Path(args["image"]), Path(args["label"]))
    start = time.perf_counter()
    preprocess_case(case, synthetic_plan(args["channels"], args["target"]), args["out"])
    print(time.perf_counter() - start)
"""


def _child_peak_bytes(args: dict) -> tuple[int, float | None]:
    """(peak RSS in bytes, seconds) of one child process running `_CHILD` with `args`."""
    import resource

    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], check=True,
                          capture_output=True, text=True)
    # RUSAGE_CHILDREN holds the largest peak of any child so far: measure children in increasing
    # order of their expected peak (baseline first), else a smaller one would be hidden.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: kilobytes
    seconds = float(done.stdout.strip()) if done.stdout.strip() else None
    return peak, seconds


def measure(case, target_spacing, out_dir: str | Path) -> dict:
    """Peak memory of preprocessing `case` to `target_spacing`, in bytes and as a multiple of the
    raw float32 image size, each in its own subprocess (call from a process whose own children
    have not yet peaked higher, see `_child_peak_bytes`)."""
    import nibabel as nib

    shape = nib.load(str(case.image)).shape
    channels = shape[3] if len(shape) == 4 else 1
    raw_bytes = int(np.prod(shape)) * 4
    args = {"id": case.id, "image": str(case.image), "label": str(case.label), "channels": channels,
            "target": list(target_spacing), "out": str(out_dir), "run": False}
    baseline, _ = _child_peak_bytes(args)
    peak, seconds = _child_peak_bytes({**args, "run": True})
    job = peak - baseline
    return {"raw_float32_bytes": raw_bytes, "baseline_bytes": baseline, "peak_bytes": peak,
            "job_bytes": job, "ratio": job / raw_bytes, "seconds": seconds}


def _scenario_case(index: int, root: Path):
    from unet.io.msd import Case

    folder = root / f"scenario_{index}"
    return Case("case_0", folder / "imagesTr" / "case_0.nii.gz", folder / "labelsTr" / "case_0.nii.gz")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=list(BRATS_SHAPE))
    parser.add_argument("--keep", help="folder for the synthetic cases (default: a temporary one)")
    parser.add_argument("--scenario", type=int, help=argparse.SUPPRESS)  # one scenario, JSON out
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        if args.scenario is not None:
            case = _scenario_case(args.scenario, root)
            print(json.dumps(measure(case, SCENARIOS[args.scenario][2], case.image.parents[1] / "out")))
            return
        for index, (name, spacing, target) in enumerate(SCENARIOS):
            write_nifti_case(_scenario_case(index, root).image.parents[1], tuple(args.shape), spacing)
            # Measured from a fresh, small interpreter: RUSAGE_CHILDREN keeps the largest child ever
            # seen, and a child forked from a large process starts with that process's size.
            done = subprocess.run([sys.executable, "-m", "unet.bench.memory", "--scenario", str(index),
                                   "--keep", str(root), "--shape", *map(str, args.shape)],
                                  check=True, capture_output=True, text=True)
            r = json.loads(done.stdout)
            print(f"{name:24s} spacing {spacing} -> {target}: job peak {r['job_bytes'] / 2**20:7.1f} MiB "
                  f"= {r['ratio']:.2f}x raw float32 ({r['raw_float32_bytes'] / 2**20:.1f} MiB), "
                  f"baseline {r['baseline_bytes'] / 2**20:.1f} MiB, {r['seconds']:.2f} s")


if __name__ == "__main__":
    main()
