"""Where a trained model's files are: `open_model_folder` turns the folder or archive a user names
(`python -m unet predict -m`, `export -m`) into the plans.json and the folder of `fold_{k}/`
networks and postprocessing.json that predict together. It accepts:

    {results}/{task}                a run's results folder: plans.json (shared by every
                                    configuration), {configuration}/fold_{k}/ and
                                    {configuration}/postprocessing.json; which configuration: the
                                    one asked for, else best_configuration.json's winner (the
                                    workflow's selection) when it is a single configuration, else
                                    the only one trained
    {results}/{task}/{configuration}  that configuration's folds (plans.json in the parent)
    an older results folder         plans.json and fold_{k}/ side by side (one configuration)
    a model archive                 zipped or unpacked (`unet.inference.unpack`): one configuration

A pair ensemble (`predict --configuration a+b`, a pair's folder `{results}/{task}/ensembles/a+b`,
or best_configuration.json selecting a pair) predicts from a run's results folder: `pair_to_predict`
names its two configurations, each opened as above. An archive holds one configuration.

Each fold's model.json names the configuration it was trained on; a fold in another
configuration's folder, or models of another configuration than the one asked for, stop with an
InputError. Every error names the folder, what it holds and the flag to choose with. No TensorFlow
here.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from unet.data.splits import Fold, parse_fold
from unet.inference.errors import InputError
from unet.inference.model_info import MODEL_INFO, ModelInfo, ModelSet, checkpoint_file, load_model_set, model_paths
from unet.inference.unpack import MANIFEST, open_archive
from unet.io.atomic import read_json
from unet.preprocessing.plan import CONFIGURATIONS

PLANS = "plans.json"
BEST_CONFIGURATION = "best_configuration.json"   # unet.evaluation.selection writes it
ENSEMBLES = "ensembles"                          # {results}/{task}/ensembles/{a}+{b}: no models of their own
ONE_CONFIGURATION = "an archive holds one configuration"
_FOLD_DIR = re.compile(r"fold_(\d+|all)")


@dataclass(frozen=True)
class ModelFolder:
    """Folds ready to predict from: a configuration's folder of a run's results, an older results
    folder, or an archive (a zip unpacked into a temporary folder) verified."""
    source: Path                     # what the user named
    folder: Path                     # holds fold_*/ and postprocessing.json
    plans: Path                      # the plans.json the folds were trained with
    manifest: dict | None            # an archive's; None for a results folder
    checkpoint: str
    configuration: str | None = None  # the folds must have been trained on it (None: any)
    chosen: str = ""                 # why this configuration (a run's results folder), for the user
    trained: tuple[str, ...] = ()    # the configurations trained in the run (a run's results folder)

    def model_set(self, folds: Sequence[Fold] | None = None) -> ModelSet:
        """The folds' networks (default: all), checked against the plan, each other, the folder's
        configuration and the manifest."""
        if self.manifest is not None:
            listed = [parse_fold(k) for k in self.manifest["folds"]]
            absent = [k for k in folds or () if k not in listed]
            if absent:
                raise InputError(f"{self.source}: no fold {', '.join(map(str, absent))} in the archive "
                                 f"(folds {', '.join(map(str, listed))}); choose other --folds")
            folds = folds or listed
        paths = model_paths(self.folder, folds, self.checkpoint)
        if self.configuration is not None and self.manifest is None:   # an archive's: its manifest, below
            self._check_configuration([ModelInfo.load(path.parent / MODEL_INFO) for path in paths])
        models = load_model_set(self.plans, paths)
        if self.manifest is not None:
            plan = models.plan
            found = {"configuration": plan.configuration, "channels": list(plan.modalities),
                     "regions": models.regions,
                     "labels": {str(k): v for k, v in sorted(plan.labels.items())}}
            for key, value in found.items():
                if self.manifest.get(key) != value:
                    raise InputError(f"{self.source}: {MANIFEST} says {key} {self.manifest.get(key)!r}, but the "
                                     f"models' files say {value!r}; the archive is corrupted")
        return models

    def _check_configuration(self, infos: Sequence[ModelInfo]) -> None:
        """Every fold's model.json names `self.configuration` (as the folder or the user does)."""
        wrong = next((info for info in infos if info.configuration != self.configuration), None)
        if wrong is None:
            return
        if self.folder != self.plans.parent:   # {results}/{task}/{configuration}
            raise InputError(f"{wrong.path}: the fold was trained on configuration {wrong.configuration}, but "
                             f"lies in {self.folder}, the {self.configuration} models' folder; move it to "
                             f"{self.plans.parent / wrong.configuration}")
        raise InputError(f"{self.source}: the models were trained on configuration {wrong.configuration} "
                         f"({wrong.path}), not {self.configuration}; choose --configuration "
                         f"{wrong.configuration}, or another model folder")


def either(names: Sequence[str]) -> str:
    """`a`, `a or b`, `a, b or c`: the choices of a flag, for messages."""
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def trained_configurations(root: Path, checkpoint: str = "final") -> tuple[str, ...]:
    """The configurations (CONFIGURATIONS order) with a network in some `root/{configuration}/fold_*/`."""
    name = checkpoint_file(checkpoint)
    return tuple(c for c in CONFIGURATIONS if (root / c).is_dir()
                 and any(_FOLD_DIR.fullmatch(d.name) and (d / name).is_file() for d in (root / c).iterdir()))


def _is_pair_folder(path: Path) -> bool:
    """Whether `path` is a pair ensemble's folder of a run, {results}/{task}/ensembles/{a}+{b}."""
    return path.parent.name == ENSEMBLES and (path.parent.parent / PLANS).is_file()


def _has_configuration_folders(root: Path) -> bool:
    """Whether `root` is a results folder of the per-configuration layout: {configuration}/fold_*/."""
    return any((root / c).is_dir() and any(_FOLD_DIR.fullmatch(d.name) and d.is_dir() for d in (root / c).iterdir())
               for c in CONFIGURATIONS)


def selected_configurations(path: Path) -> list[str]:
    """The configurations of best_configuration.json's winner (two for a pair ensemble)."""
    try:
        winner = read_json(path)["best"]["configurations"]
        if not (isinstance(winner, list) and winner and all(isinstance(c, str) for c in winner)):
            raise ValueError(f"best.configurations is {winner!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not the selection's {BEST_CONFIGURATION} ({exc}); run the workflow's "
                         f"selection again, or choose with --configuration") from exc
    return winner


def choose_configuration(root: Path, checkpoint: str, configuration: str | None = None) -> tuple[str, str]:
    """(configuration, why) of the run's results folder `root`: `configuration` when given, else
    best_configuration.json's winner, else the only configuration trained."""
    trained, name = trained_configurations(root, checkpoint), checkpoint_file(checkpoint)
    held = f"trained there: {', '.join(trained)}" if trained else f"none has a fold_*/{name}"
    if configuration is not None:
        if configuration not in trained:
            raise InputError(f"{root}: no trained {configuration} models ({root / configuration}/fold_*/{name}; "
                             f"{held})" + (f"; choose --configuration {either(trained)}" if trained else ""))
        return configuration, "as asked"
    best = root / BEST_CONFIGURATION
    if best.is_file():
        winner = selected_configurations(best)
        if len(winner) > 1:
            raise InputError(f"{best}: the selected model is the ensemble {'+'.join(winner)}; {ONE_CONFIGURATION}; "
                             f"choose --configuration {either(winner)}")
        if winner[0] not in trained:
            raise InputError(f"{best}: selects {winner[0]}, but {root / winner[0]} has no trained models "
                             f"(fold_*/{name}; {held})" + (f"; choose --configuration {either(trained)}"
                                                           if trained else ""))
        return winner[0], f"selected in {BEST_CONFIGURATION}"
    if len(trained) == 1:
        return trained[0], "the only configuration trained"
    if not trained:
        raise InputError(f"{root}: no trained models ({{configuration}}/fold_*/{name}) in the model folder")
    raise InputError(f"{root}: models of several configurations ({', '.join(trained)}) and no {BEST_CONFIGURATION} "
                     f"to choose between them (the workflow's selection writes it); choose --configuration "
                     f"{either(trained)}")


def open_model_folder(path: str | os.PathLike, stack: contextlib.ExitStack, checkpoint: str | None = None,
                      configuration: str | None = None) -> ModelFolder:
    """The models at `path`: a run's results folder (the `configuration`, or the one chosen as the
    module says), a configuration's folder, an older results folder, an unpacked archive (it has
    a manifest.json) or a zip (extracted into a temporary folder that `stack` removes).
    `checkpoint`: "final" or "best"; None means an archive's own, else "final". `configuration`:
    one of CONFIGURATIONS; given for an older results folder or an archive, its models must be of
    it."""
    path = Path(path)
    if configuration is not None and configuration not in CONFIGURATIONS:
        raise InputError(f"configuration {configuration!r}: expected one of {', '.join(CONFIGURATIONS)}")
    archive = open_archive(path, stack)
    if archive is not None:
        folder, manifest = archive
        if checkpoint not in (None, manifest["checkpoint"]):
            raise InputError(f"{path}: the archive holds the {manifest['checkpoint']} checkpoint, not {checkpoint}; "
                             f"predict with --checkpoint {manifest['checkpoint']}, or export again with "
                             f"--checkpoint {checkpoint}")
        held = manifest.get("configuration")
        if configuration not in (None, held):
            raise InputError(f"{path}: the archive holds {held} models, not {configuration}; predict without "
                             f"--configuration, or export the {configuration} models of the run (`python -m unet "
                             f"export -m RESULTS_DIR --configuration {configuration}`)")
        return ModelFolder(path, folder, folder / PLANS, manifest, manifest["checkpoint"], held)
    checkpoint = checkpoint or "final"
    if _is_pair_folder(path):
        members = path.name.split("+")
        raise InputError(f"{path}: a pair ensemble's folder holds no models; {ONE_CONFIGURATION}; give the run's "
                         f"folder {path.parent.parent} and choose --configuration {either(members)}")
    if path.name in CONFIGURATIONS and not (path / PLANS).is_file() and (path.parent / PLANS).is_file():
        if configuration not in (None, path.name):
            raise InputError(f"{path}: the folder of the {path.name} models, not {configuration}; give the run's "
                             f"folder {path.parent} with --configuration {configuration}, or drop --configuration")
        return ModelFolder(path, path, path.parent / PLANS, None, checkpoint, path.name)
    if not _has_configuration_folders(path):   # an older results folder: plans.json beside fold_*/
        return ModelFolder(path, path, path / PLANS, None, checkpoint, configuration)
    chosen, why = choose_configuration(path, checkpoint, configuration)
    return ModelFolder(path, path / chosen, path / PLANS, None, checkpoint, chosen, why,
                       trained_configurations(path, checkpoint))


def split_pair(name: str, where: str | os.PathLike) -> tuple[str, str]:
    """The two configurations of a pair ensemble's name `a+b`; InputError naming `where` otherwise."""
    members = tuple(name.split("+"))
    if len(members) != 2 or len(set(members)) != 2 or any(m not in CONFIGURATIONS for m in members):
        raise InputError(f"{where}: {name!r} is not a pair ensemble: expected two different configurations "
                         f"joined by +, each one of {', '.join(CONFIGURATIONS)}")
    return members


def pair_to_predict(path: str | os.PathLike, configuration: str | None = None,
                    checkpoint: str | None = None) -> tuple[Path, tuple[str, str], str] | None:
    """(the run's results folder, the pair's two configurations, why) when `path` with
    `configuration` names a pair ensemble: `configuration` `a+b` with a run's results folder, a
    pair's folder `ensembles/a+b`, or, with no `configuration`, a results folder whose
    best_configuration.json selects a pair. None when they name one configuration. Both members
    must have trained models (`checkpoint`, default final)."""
    path = Path(path)
    if _is_pair_folder(path):
        root, members, why = path.parent.parent, split_pair(path.name, path), "the pair's folder"
        if configuration not in (None, path.name):
            raise InputError(f"{path}: the folder of the pair {path.name}, not {configuration}; give the run's folder "
                             f"{root} with --configuration {configuration}, or drop --configuration")
    elif configuration is not None and "+" in configuration:
        root, members, why = path, split_pair(configuration, "--configuration"), "as asked"
        if not _has_configuration_folders(path):
            raise InputError(f"{path}: a pair ensemble ({configuration}) predicts from a run's results folder "
                             f"({{configuration}}/fold_*/ of both); {ONE_CONFIGURATION}, as an older results "
                             f"folder does")
    elif configuration is None and _has_configuration_folders(path) and (path / BEST_CONFIGURATION).is_file():
        winner = selected_configurations(path / BEST_CONFIGURATION)
        if len(winner) == 1:
            return None
        root, members, why = path, split_pair("+".join(winner), path / BEST_CONFIGURATION), \
            f"selected in {BEST_CONFIGURATION}"
    else:
        return None
    trained, name = trained_configurations(root, checkpoint or "final"), checkpoint_file(checkpoint or "final")
    missing = [m for m in members if m not in trained]
    if missing:
        held = f"trained there: {', '.join(trained)}" if trained else f"none has a fold_*/{name}"
        raise InputError(f"{root}: no trained {missing[0]} models for the pair {'+'.join(members)} "
                         f"({root / missing[0]}/fold_*/{name}; {held})")
    return root, members, why


def pair_folder(root: Path, members: Sequence[str]) -> Path:
    """The workflow's folder of the pair (its postprocessing.json): ensembles/a+b, in either order."""
    names = ["+".join(members), "+".join(reversed(members))]
    return next((root / ENSEMBLES / n for n in names if (root / ENSEMBLES / n).is_dir()), root / ENSEMBLES / names[0])
