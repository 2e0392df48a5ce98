"""Command line: `python -m unet predict -i IN -o OUT -m RESULTS_DIR [--folds ...]`.

argparse lives here only: the arguments become a small dataclass, which is handed to library
functions. TensorFlow is imported only once the inputs have been checked.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

PROG = "python -m unet"


@dataclass(frozen=True)
class PredictCommand:
    input_dir: Path
    output_dir: Path
    results_dir: Path
    folds: tuple[int, ...] | None
    overlap: float
    blend: str
    tta: bool
    batch_size: int
    save_probabilities: bool
    regions: bool = False


def _overlap(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="unet: 3D segmentation from MSD datasets. The workflow runs through "
                               "Snakemake; this command line serves trained models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict", help="segment a folder of images with the models of a finished run",
        description="Segment every image in IN (*.nii.gz, *.nii, *.nrrd, *.nhdr, *.mha, *.mhd: one file "
                    "per case, channels last or as vector components, or 3D for one channel; a "
                    "subfolder holding a DICOM series is one case) with the fold models of "
                    "RESULTS_DIR (a run's {results}/{task}: plans.json, fold_*/model.keras), "
                    "probabilities averaged over folds, and write OUT/{case} with the image's own "
                    "ending (a DICOM series as a folder of slices) in the image's own grid.")
    predict.add_argument("-i", "--input", required=True, type=Path, metavar="IN", help="folder of images")
    predict.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                         help="folder for the segmentations (created if missing)")
    predict.add_argument("-m", "--model-dir", required=True, type=Path, metavar="RESULTS_DIR",
                         help="results folder of a run: plans.json and fold_{k}/model.keras")
    predict.add_argument("--folds", nargs="+", type=_non_negative_int, metavar="K",
                         help="folds to ensemble (default: every fold_* with a model.keras)")
    predict.add_argument("--overlap", type=_overlap, default=0.5,
                         help="overlap of neighbouring windows, in [0, 1) (default 0.5)")
    predict.add_argument("--blend", choices=("gaussian", "constant"), default="gaussian",
                         help="window weighting (default gaussian)")
    predict.add_argument("--batch-size", type=_positive_int, default=2,
                         help="windows per network call (default 2)")
    predict.add_argument("--tta", action="store_true", help="average over all 8 mirrorings")
    predict.add_argument("--save-probabilities", action="store_true",
                         help="also write OUT/{case}.npz: 'probabilities' (K, X, Y, Z) float32 in the "
                              "image's grid and 'label_values'")
    predict.add_argument("--regions", action="store_true",
                         help="the models were trained with train.regions: dataset (one sigmoid per region); "
                              "the regions are read from RESULTS_DIR/dataset.ok")
    return parser


def parse_predict(args: argparse.Namespace) -> PredictCommand:
    return PredictCommand(
        input_dir=args.input, output_dir=args.output, results_dir=args.model_dir,
        folds=tuple(dict.fromkeys(args.folds)) if args.folds else None, overlap=args.overlap, blend=args.blend,
        tta=args.tta, batch_size=args.batch_size, save_probabilities=args.save_probabilities,
        regions=args.regions)


def run_predict(command: PredictCommand) -> list[Path]:
    from unet.runtime import configure_tensorflow

    configure_tensorflow(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else os.cpu_count() or 1)
    from unet.inference.predict import InputError, PredictSettings
    from unet.inference.regions import regions_from_setting
    from unet.inference.standalone import predict_folder

    try:
        regions = regions_from_setting("dataset" if command.regions else None, command.results_dir / "dataset.ok",
                                       where="--regions")
    except FileNotFoundError as exc:
        raise InputError(f"{exc.filename}: missing; --regions reads the regions the run recorded there") from exc
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    settings = PredictSettings(overlap=command.overlap, blend=command.blend, tta=command.tta,
                               batch_size=command.batch_size,
                               save_probabilities=command.save_probabilities, regions=regions)
    return predict_folder(command.input_dir, command.output_dir, command.results_dir, command.folds,
                          settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unet.inference.predict import InputError
    from unet.io.images import ImageReadError

    command = parse_predict(args)
    try:
        written = run_predict(command)
    except (InputError, ImageReadError) as exc:  # the user's mistakes; anything else is a bug: traceback
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} segmentation(s) to {command.output_dir}")
    return 0
