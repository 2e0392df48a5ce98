"""Command line: `python -m unet predict -i IN -o OUT -m MODEL [--configuration C] [--folds ...]
[--runtime ...]` and `python -m unet export -m RESULTS_DIR -o model.zip [--configuration C]
[--folds ...] [--formats ...]`.

argparse lives here only: the arguments become a small dataclass, which is handed to library
functions. TensorFlow is imported only once the inputs have been checked (export needs none).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from unet.inference.runtimes import RUNTIMES, RuntimeUnavailable
from unet.preprocessing.plan import CONFIGURATIONS

PROG = "python -m unet"


@dataclass(frozen=True)
class PredictCommand:
    input_dir: Path
    output_dir: Path
    results_dir: Path
    folds: tuple[int | str, ...] | None
    overlap: float
    blend: str
    tta: bool
    batch_size: int
    save_probabilities: bool
    checkpoint: str | None = None   # None: an archive's own, else final
    runtime: str = "keras"          # which of each fold's files predicts (unet.inference.runtimes)
    postprocess: bool = True        # apply the models' postprocessing.json, when they have one
    configuration: str | None = None  # which of a run's configurations; None: the selected one


@dataclass(frozen=True)
class ExportCommand:
    results_dir: Path
    output: Path
    folds: tuple[int | str, ...] | None
    checkpoint: str | None
    config: Path | None
    formats: tuple[str, ...] = ()
    configuration: str | None = None  # which of a run's configurations; None: the selected one


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


def _fold(text: str) -> int | str:
    """A fold number (>= 0) or `all` (the model trained on every case)."""
    if text == "all":
        return text
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'all', got {text}")
    return value


def _configuration_or_pair(text: str) -> str:
    """A configuration, or a pair ensemble's two joined by +."""
    if "+" not in text:
        if text not in CONFIGURATIONS:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(CONFIGURATIONS)}, or two of them "
                                             f"joined by + (a pair ensemble), got {text!r}")
        return text
    from unet.inference.errors import InputError
    from unet.inference.model_folder import split_pair

    try:
        split_pair(text, "--configuration")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_CONFIGURATION_HELP = ("which of the run's configurations (default: the one best_configuration.json "
                       "selects, else the only one trained); with an archive, the one it must hold")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="unet: 3D segmentation from MSD datasets. The workflow runs through "
                               "Snakemake; this command line serves trained models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict", help="segment a folder of images with the models of a finished run or an archive",
        description="Segment every image in IN (*.nii.gz, *.nii, *.nrrd, *.nhdr, *.mha, *.mhd: one file "
                    "per case, channels last or as vector components, or 3D for one channel; a "
                    "subfolder holding a DICOM series is one case) with the fold models of MODEL (a "
                    "run's {results}/{task}: plans.json and {configuration}/fold_*/model.keras and "
                    "model.json; or a model archive from `export`, zipped or unpacked), probabilities "
                    "averaged over folds, "
                    "and write OUT/{case} with the image's own ending (a DICOM series as a folder of "
                    "slices) in the image's own grid. Labels, regions and postprocessing "
                    "(postprocessing.json) come with the models.")
    predict.add_argument("-i", "--input", required=True, type=Path, metavar="IN", help="folder of images")
    predict.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                         help="folder for the segmentations (created if missing)")
    predict.add_argument("-m", "--model-dir", required=True, type=Path, metavar="MODEL",
                         help="results folder of a run (plans.json, {configuration}/fold_{k}/model.keras "
                              "and model.json), one configuration's folder of it, or a model archive "
                              "(model.zip, or the folder it unpacks to)")
    predict.add_argument("--configuration", type=_configuration_or_pair, metavar="C",
                         help=f"{_CONFIGURATION_HELP}; one of {', '.join(CONFIGURATIONS)}, or two joined by + "
                              f"(e.g. 2d+3d_fullres) for their pair ensemble, from a run's results folder: "
                              f"the two configurations' probabilities averaged, then the pair's "
                              f"ensembles/{{a}}+{{b}}/postprocessing.json")
    predict.add_argument("--folds", nargs="+", type=_fold, metavar="K",
                         help="folds to ensemble, numbers or all (default: every fold with a model)")
    predict.add_argument("--checkpoint", choices=("final", "best"),
                         help="each fold's final network or the best epoch's (default: an archive's "
                              "own, else final)")
    predict.add_argument("--runtime", choices=RUNTIMES, default="keras",
                         help="run each fold's network as Keras (default), or as the SavedModel or ONNX "
                              "export an archive holds (`export --formats saved_model onnx`; onnx needs "
                              "the optional ONNX packages)")
    predict.add_argument("--no-postprocess", action="store_true",
                         help="write the networks' label maps as they are, without the models' "
                              "postprocessing.json (applied by default when they have one; never to "
                              "the probabilities)")
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
                         help="deprecated, ignored: the regions come with the models (fold_{k}/model.json)")
    export = commands.add_parser(
        "export", help="write a run's models as one archive (zip) that predicts with no other file",
        description="Write ZIP: one configuration's fold networks (fold_{k}/model.keras), each "
                    "fold's model.json (regions, training settings), the run's plans.json (labels, "
                    "channels, preprocessing), the configuration's postprocessing.json, the package "
                    "version and a manifest with the SHA-256 of every member. "
                    "`python -m unet predict -m ZIP` predicts from it.")
    export.add_argument("-m", "--model-dir", required=True, type=Path, metavar="RESULTS_DIR",
                        help="results folder of a run ({results}/{task}), one configuration's folder "
                             "of it, or an archive to re-export")
    export.add_argument("--configuration", choices=CONFIGURATIONS, help=_CONFIGURATION_HELP)
    export.add_argument("-o", "--output", required=True, type=Path, metavar="ZIP", help="archive to write")
    export.add_argument("--folds", nargs="+", type=_fold, metavar="K",
                        help="folds to include, numbers or all (default: every fold with a model)")
    export.add_argument("--checkpoint", choices=("final", "best"),
                        help="each fold's final network or the best epoch's (default: final, or a "
                             "re-exported archive's own)")
    export.add_argument("--config", type=Path, metavar="YAML",
                        help="the workflow config the run used, stored in the archive as config.json")
    export.add_argument("--formats", nargs="+", choices=("saved_model", "onnx"), default=(),
                        help="also export each network in these formats, checked against Keras "
                             "(onnx needs the optional ONNX packages)")
    return parser


def _folds(args: argparse.Namespace) -> tuple[int | str, ...] | None:
    return tuple(dict.fromkeys(args.folds)) if args.folds else None


def parse_predict(args: argparse.Namespace) -> PredictCommand:
    if args.regions:
        print(f"{PROG} predict: warning: --regions is deprecated and ignored: the regions come with the "
              f"models (fold_{{k}}/model.json)", file=sys.stderr)
    return PredictCommand(
        input_dir=args.input, output_dir=args.output, results_dir=args.model_dir, folds=_folds(args),
        overlap=args.overlap, blend=args.blend, tta=args.tta, batch_size=args.batch_size,
        save_probabilities=args.save_probabilities, checkpoint=args.checkpoint, runtime=args.runtime,
        postprocess=not args.no_postprocess, configuration=args.configuration)


def parse_export(args: argparse.Namespace) -> ExportCommand:
    return ExportCommand(results_dir=args.model_dir, output=args.output, folds=_folds(args),
                         checkpoint=args.checkpoint, config=args.config, formats=tuple(args.formats),
                         configuration=args.configuration)


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _configure_tensorflow() -> None:
    from unet.runtime import configure_tensorflow

    configure_tensorflow(_threads())


def run_predict(command: PredictCommand) -> list[Path]:
    _configure_tensorflow()
    from unet.inference.predict import PredictSettings
    from unet.inference.standalone import predict_folder

    settings = PredictSettings(overlap=command.overlap, blend=command.blend, tta=command.tta,
                               batch_size=command.batch_size, save_probabilities=command.save_probabilities)
    return predict_folder(command.input_dir, command.output_dir, command.results_dir, command.folds,
                          settings, checkpoint=command.checkpoint, runtime=command.runtime,
                          threads=_threads(), postprocess=command.postprocess,
                          configuration=command.configuration)


def run_export(command: ExportCommand) -> Path:
    import yaml

    from unet.inference.archive import export_archive
    from unet.inference.errors import InputError

    config = None
    if command.config is not None:
        try:
            config = yaml.safe_load(command.config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{command.config}: cannot read the config ({exc})") from exc
    if command.formats:  # converting the networks needs TensorFlow
        _configure_tensorflow()
    return export_archive(command.results_dir, command.output, folds=command.folds,
                          checkpoint=command.checkpoint, config=config, formats=("keras", *command.formats),
                          configuration=command.configuration)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unet.inference.errors import InputError
    from unet.io.images import ImageReadError

    try:
        if args.command == "export":
            command = parse_export(args)
            written = run_export(command)
            print(f"wrote {written}")
            return 0
        command = parse_predict(args)
        written = run_predict(command)
    except (InputError, ImageReadError, RuntimeUnavailable) as exc:  # the user's mistakes or setup;
        # anything else is a bug: traceback
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} segmentation(s) to {command.output_dir}")
    return 0
