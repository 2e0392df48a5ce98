"""Fine-tuning: a training that starts from another model's weights (config `train.init_weights`).

`initial_weights(path)` finds the Keras model file the setting names, without importing Keras (the
workflow makes that file an input of `train`, so a changed file retrains): a `.keras` file; a fold
folder holding `model.keras`; or a run's results folder (or an unpacked model archive) holding
`fold_*/model.keras`, where `fold_all` is taken if there is one, else the only fold (with several,
name the one to start from: `.../fold_0/model.keras`); a run's results folder of several
configurations (`{configuration}/fold_*/`) gives its only trained configuration's (with several,
name its folder: `.../3d_fullres`); or a model archive (`model.zip`, from
`python -m unet export`), itself the input, unpacked and verified when the weights are loaded,
where the same choice of fold is made.

`load_initial_weights(model, path)` copies that model's weights into the training model layer by
layer, matched by name, where every weight has the same shape. The output heads (`head`, and the
deep-supervision heads `head_ds*`, which a saved model does not hold) start fresh when they differ,
e.g. with another number of labels or regions; any other layer that cannot be matched (missing on
one side, or of another shape: other filters, levels, kernels or input channels) stops the training
before its first step, with an error naming those layers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.keras"
_HEAD = re.compile(r"head(_ds\d+)?")  # unet.model.network's output convolutions
_FOLD_DIR = re.compile(r"fold_(\d+|all)")


def initial_weights(path: str | os.PathLike) -> Path:
    """The `.keras` file that `path` (a model file, a fold folder or a results folder) names."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".zip":  # a model archive: unpacked by `load_initial_weights`
            return path
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a Keras model file (.keras) or a folder of them")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    path = _configuration_folder(path)
    folds = sorted(d.name for d in path.iterdir() if _FOLD_DIR.fullmatch(d.name) and (d / MODEL_FILE).is_file())
    if "fold_all" in folds:
        return path / "fold_all" / MODEL_FILE
    if len(folds) == 1:
        return path / folds[0] / MODEL_FILE
    if not folds:
        raise FileNotFoundError(f"{path}: holds no {MODEL_FILE} and no fold_*/{MODEL_FILE}")
    raise ValueError(f"{path}: holds the models of {', '.join(folds)} and no fold_all; give the one to "
                     f"start from, e.g. {path / folds[0] / MODEL_FILE}")


def _configuration_folder(path: Path) -> Path:
    """`path`, or for a run's results folder of the per-configuration layout its only trained
    configuration's folder (the topology to start from is the user's choice, not the selection's)."""
    from unet.inference.model_folder import trained_configurations

    trained = trained_configurations(path)
    if len(trained) > 1:
        raise ValueError(f"{path}: holds the models of configurations {', '.join(trained)}; give the folder "
                         f"of the one to start from, e.g. {path / trained[0]}")
    return path / trained[0] if trained else path


@dataclass(frozen=True)
class Transfer:
    """What `load_initial_weights` did: layers copied, and heads started fresh (with the reason)."""

    source: Path
    copied: tuple[str, ...]
    fresh: dict[str, str]

    def summary(self) -> str:
        fresh = "; ".join(f"{name} ({why})" for name, why in self.fresh.items()) or "none"
        return f"init_weights {self.source}: {len(self.copied)} layers copied; new: {fresh}"


def _shapes(layer) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in w.shape) for w in layer.weights]


def plan_transfer(source, target) -> tuple[list[str], dict[str, str], list[str]]:
    """(layers to copy, heads to start fresh with why, problems) for two Keras models: every layer of
    either model that has weights, matched by name and weight shapes (see the module docstring)."""
    src = {layer.name: layer for layer in source.layers if layer.weights}
    dst = {layer.name: layer for layer in target.layers if layer.weights}
    copy, fresh, problems = [], {}, []
    for name, layer in dst.items():
        head = bool(_HEAD.fullmatch(name))
        if name not in src:
            if head:
                fresh[name] = "not in the source model"
            else:
                problems.append(f"{name} {_shapes(layer)} is not in the source model")
        elif _shapes(src[name]) != _shapes(layer):
            why = f"weights {_shapes(src[name])} in the source model, {_shapes(layer)} here"
            if head:
                fresh[name] = why
            else:
                problems.append(f"{name}: {why}")
        else:
            copy.append(name)
    problems += [f"{name} {_shapes(layer)} is only in the source model" for name, layer in src.items()
                 if name not in dst and not _HEAD.fullmatch(name)]
    return copy, fresh, problems


def load_initial_weights(model, path: str | os.PathLike) -> Transfer:
    """Copy the weights of the model `path` names (`initial_weights`) into `model` where they match;
    raise ValueError naming every layer that does not (heads excepted: they start fresh)."""
    from unet.model.saved import load_model  # here, so that the workflow can resolve paths without Keras

    source_path = initial_weights(path)
    if source_path.suffix == ".zip":
        source = _archive_model(source_path)
    else:
        source = load_model(source_path)
    copy, fresh, problems = plan_transfer(source, model)
    if problems:
        raise ValueError(f"config train.init_weights: {source_path} does not fit this network (another "
                         f"topology: plan filters, strides, kernels or input channels); these layers cannot "
                         f"be matched: " + "; ".join(problems))
    layers = {layer.name: layer for layer in source.layers}
    for name in copy:
        model.get_layer(name).set_weights(layers[name].get_weights())
    return Transfer(source_path, tuple(copy), fresh)


def _archive_model(path: Path):
    """The network a model archive holds for fine-tuning: fold_all's, else its only fold's
    (checksums verified first: unet.inference.unpack)."""
    import contextlib

    from unet.inference.model_folder import open_model_folder
    from unet.model.saved import load_model

    with contextlib.ExitStack() as stack:
        archive = open_model_folder(path, stack)
        folds = archive.manifest["folds"]
        if "all" not in folds and len(folds) != 1:
            raise ValueError(f"{path}: holds the models of folds {', '.join(map(str, folds))} and no fold all; "
                             f"export the one to start from (`python -m unet export --folds K`)")
        [model] = archive.model_set(["all"] if "all" in folds else folds).models
        return load_model(model)
