"""Loading saved networks and weights, also those saved before the network had its own layers.

A `.keras` file names each layer's class: the network's own (`unet.model.instance_norm`) must be
registered before Keras reads one, which importing this module does. Files saved when the network
used Keras' GroupNormalization as instance normalization load as they were saved (Keras has that
class). A bare `.weights.h5` file (`checkpoints/best.weights.h5`) instead keys each layer by a name
made from its class (`group_normalization_3`), so `load_weights` renames those for the
InstanceNormalization layers that replaced them, in the same order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras

from unet.model.instance_norm import InstanceNormalization  # noqa: F401  registers the class for loading

_OLD_NORM, _NEW_NORM = "group_normalization", "instance_normalization"


def load_model(path: str | os.PathLike) -> keras.Model:
    """A network saved as `.keras`, by this code or an earlier version (not compiled)."""
    return keras.saving.load_model(str(path), compile=False)


def load_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """`model.load_weights(path)`, also from a `.weights.h5` file written before the network had
    its own InstanceNormalization."""
    try:
        model.load_weights(path)
    except ValueError:
        with tempfile.TemporaryDirectory(prefix="unet_weights_") as folder:
            renamed = _with_renamed_norms(Path(path), Path(folder) / "renamed.weights.h5")
            if not renamed:
                raise
            model.load_weights(renamed)


def _with_renamed_norms(path: Path, copy: Path) -> Path | None:
    """`copy` of the weights file `path` with GroupNormalization's keys renamed to
    InstanceNormalization's (group_normalization_k -> instance_normalization_k), or None if it
    has none."""
    import h5py

    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as weights:
        layers = weights.get("layers")
        old = [name for name in (layers.keys() if layers is not None else []) if name.startswith(_OLD_NORM)]
        if not old or any(name.startswith(_NEW_NORM) for name in layers.keys()):
            return None
        for name in old:
            layers.move(name, _NEW_NORM + name[len(_OLD_NORM):])
    return copy
