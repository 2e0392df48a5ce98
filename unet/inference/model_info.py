"""What a trained fold needs to predict, beside its network: `fold_{k}/model.json`.

The train stage writes, in each fold's folder (after the networks, each file atomically):

    model.keras        the final network (probabilities out)
    model_best.keras   the network at the best EMA of the validation pseudo Dice (nnU-Net's
                       checkpoint_best), chosen with predict.checkpoint: best
    model.json         {"format": "unet-model", "version": 1, "package_version", "plans_sha256",
                        "configuration": the plans.json configuration trained (3d_fullres, ...),
                        "regions": null or {name: [label values]} in the output channels' order,
                        "checkpoints": {"final": {"file", "epoch"}, "best": {"file", "epoch",
                        "ema_val_dice"}}, "train": the config's train section as trained}

One file per fold, not one per run: each fold is trained by its own job, which writes only its own
outputs, so no fold is ever described by a file another job wrote (or has yet to write), and a fold
folder copied alone still says how to predict with it. What the folds share is not copied into
them: label values and names, channels, patch size and preprocessing stay in `plans.json`, the one
source of truth, which model.json names by its SHA-256 (`plans_sha256`) and configuration.
`load_model_set` refuses a fold trained on another plans.json, and folds that disagree on their
configuration or regions. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import unet
from unet.data.splits import Fold, parse_fold
from unet.inference.errors import InputError
from unet.io.atomic import read_json, write_json
from unet.preprocessing.plan import FULLRES, Plan

FORMAT, VERSION = "unet-model", 1
MODEL_INFO = "model.json"
CHECKPOINTS = {"final": "model.keras", "best": "model_best.keras"}
_FOLD_DIR = re.compile(r"fold_(\d+|all)")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_file(checkpoint: str) -> str:
    """The file name of a fold's `checkpoint` ("final" or "best")."""
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    return CHECKPOINTS[checkpoint]


def best_row(rows: Sequence[Mapping]) -> Mapping:
    """The training log row of the epoch whose weights the loop kept as best: the last epoch that
    raised the EMA of the validation Dice above every earlier one (`unet.training.loop`); without
    validation (fold all), the last epoch."""
    best, kept = -1.0, rows[-1]
    for row in rows:
        if row.get("ema_val_dice") is not None and row["ema_val_dice"] > best:
            best, kept = row["ema_val_dice"], row
    return kept


def write_model_info(fold_dir: str | os.PathLike, *, plans: str | os.PathLike, regions: Mapping | None,
                     rows: Sequence[Mapping], train: Mapping, configuration: str = FULLRES) -> Path:
    """Write `fold_dir`/model.json for networks trained on `configuration` of `plans` with
    `regions` (resolved, or None for softmax over labels); `rows` is the training log, `train` the
    settings trained with."""
    best = best_row(rows)
    info = {
        "format": FORMAT, "version": VERSION, "package_version": unet.__version__,
        "plans_sha256": file_sha256(plans), "configuration": configuration,
        "regions": None if regions is None else {str(k): [int(v) for v in vs] for k, vs in regions.items()},
        "checkpoints": {"final": {"file": CHECKPOINTS["final"], "epoch": int(rows[-1]["epoch"])},
                        "best": {"file": CHECKPOINTS["best"], "epoch": int(best["epoch"]),
                                 "ema_val_dice": best.get("ema_val_dice")}},
        "train": dict(train),
    }
    path = Path(fold_dir) / MODEL_INFO
    write_json(path, info)
    return path


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    plans_sha256: str
    configuration: str
    regions: dict[str, list[int]] | None
    checkpoints: dict
    package_version: str
    train: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelInfo":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: missing; the train stage writes it beside each fold's model.keras "
                             f"(models trained before it existed: train the fold again)")
        try:
            info = read_json(path)
            if info.get("format") != FORMAT:
                raise ValueError(f"format {info.get('format')!r}, expected {FORMAT!r}")
            if int(info["version"]) > VERSION:
                raise ValueError(f"version {info['version']} is newer than this package reads ({VERSION}); "
                                 f"update unet")
            regions = info["regions"]
            return cls(path=path, plans_sha256=str(info["plans_sha256"]),
                       configuration=str(info.get("configuration", FULLRES)),
                       regions=None if regions is None else {str(k): [int(v) for v in vs]
                                                             for k, vs in regions.items()},
                       checkpoints=dict(info["checkpoints"]), package_version=str(info["package_version"]),
                       train=dict(info.get("train", {})))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: not a model description written by the train stage ({exc})") from exc


def fold_of(model: str | os.PathLike) -> Fold:
    """The fold (a number, or `all`) of a network in the results layout, from its folder's name."""
    return parse_fold(Path(model).parent.name.removeprefix("fold_"))


def model_paths(results_dir: str | os.PathLike, folds: Sequence[Fold] | None = None,
                checkpoint: str = "final") -> list[Path]:
    """`fold_{k}/model.keras` (or the `checkpoint`'s file) for the requested folds, or every fold
    that has one (numbers in order, then `all`)."""
    results_dir, name = Path(results_dir), checkpoint_file(checkpoint)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: model folder does not exist; pass a run's results folder "
                         f"({{results}}/{{task}}: plans.json and {{configuration}}/fold_*/{name}), one "
                         f"configuration's folder of it, or a model archive")
    if folds is None:
        found = sorted(((m.group(1) == "all", int(m.group(1)) if m.group(1).isdigit() else 0), d / name)
                       for d in results_dir.iterdir() if (m := _FOLD_DIR.fullmatch(d.name)) and (d / name).is_file())
        if not found:
            raise InputError(f"{results_dir}: no trained models (fold_*/{name}) in the model folder")
        return [path for _, path in found]
    missing = [results_dir / f"fold_{k}" / name for k in folds if not (results_dir / f"fold_{k}" / name).is_file()]
    if missing:
        raise InputError(f"{', '.join(map(str, missing))}: no such model; train the fold first or "
                         f"choose other --folds")
    return [results_dir / f"fold_{k}" / name for k in folds]


@dataclass(frozen=True)
class ModelSet:
    """Networks that predict together (one per fold), with the plan and regions they share."""
    plans: Path
    plan: Plan
    models: tuple[Path, ...]
    infos: tuple[ModelInfo, ...]
    regions: dict[str, list[int]] | None


def load_model_set(plans: str | os.PathLike, models: Sequence[str | os.PathLike]) -> ModelSet:
    """The networks `models`, each described by the model.json beside it, to be run with `plans`:
    refused (InputError naming the file) if one was trained on another plans.json or if they were
    trained with different regions."""
    plans, models = Path(plans), [Path(m) for m in models]
    if not plans.is_file():
        raise InputError(f"{plans}: missing; the model folder must hold the run's plans.json")
    digest = file_sha256(plans)
    infos = [ModelInfo.load(m.parent / MODEL_INFO) for m in models]
    for info in infos:
        if info.plans_sha256 != digest:
            raise InputError(f"{info.path}: the fold was trained with another plans.json than {plans} "
                             f"(SHA-256 {info.plans_sha256[:12]}... vs {digest[:12]}...): train it again "
                             f"with this plan, or predict with the plans.json it was trained with")
    for key in ("configuration", "regions"):
        found = {info.path: getattr(info, key) for info in infos}
        if len({repr(value) for value in found.values()}) > 1:
            raise InputError(f"folds trained with different {key} cannot be averaged: "
                             + "; ".join(f"{path}: {value}" for path, value in found.items())
                             + "; predict them separately (--folds)")
    configuration = infos[0].configuration if infos else FULLRES
    try:
        plan = Plan.load(plans, configuration)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return ModelSet(plans=plans, plan=plan, models=tuple(models), infos=tuple(infos),
                    regions=infos[0].regions if infos else None)
