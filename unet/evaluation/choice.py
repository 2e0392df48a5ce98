"""The workflow's side of choosing a configuration (`unet.evaluation.selection`): rule
`select_configuration` (best_configuration.json and its table for the report) and rule
`ensemble_pair` (a pair's label maps from the averaged probabilities of its two configurations,
for the pair's postprocessing and test set).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from tqdm import tqdm

from unet.data.splits import load_fold
from unet.evaluation.cv import cv_files
from unet.evaluation.selection import find_best_configuration
from unet.inference.model_info import ModelInfo
from unet.inference.postprocess import label_dtype
from unet.inference.probabilities import ensemble_labels
from unet.io.atomic import atomic_path
from unet.io.images import image_path, load_label, save_image
from unet.io.msd import load_dataset
from unet.preprocessing.plan import Plan


def write_ensemble(folders: Sequence[str | os.PathLike], out_dir: str | os.PathLike, ending: str) -> list[Path]:
    """{out_dir}/{case}{ending}: for every case whose probabilities ({case}.npz) all `folders`
    hold, the label map of their average, in the geometry of the first folder's label map of the
    case. Cases are those of the first folder; one missing from another folder is an error."""
    first = cv_files(folders[0], ".npz")
    others = [cv_files(folder, ".npz") for folder in folders[1:]]
    for folder, files in zip(folders[1:], others):
        missing = sorted(set(first) - set(files))
        if missing:
            raise ValueError(f"{folder}: no probabilities for case(s) {missing} that {folders[0]} predicted; "
                             f"the ensemble needs both")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for case, path in tqdm(first.items(), desc="ensemble", unit="case"):
        labels = ensemble_labels([path, *(files[case] for files in others)])
        _, affine = load_label(image_path(folders[0], case, ending))
        written.append(image_path(out_dir, case, ending))
        save_image(written[-1], labels.astype(label_dtype(labels)), affine, ending=ending)
    return written


def selection_table(result: Mapping) -> pd.DataFrame:
    """One row per candidate: its foreground Dice, then the Dice of each class; the chosen first."""
    rows = [{"candidate": c["name"], "foreground Dice": c["foreground_dice"], **c["dice"]}
            for c in result["candidates"]]
    table = pd.DataFrame(rows).sort_values("foreground Dice", ascending=False, kind="stable")
    return table.reset_index(drop=True)


def write_selection_html(result: Mapping, path: str | os.PathLike) -> None:
    table = selection_table(result).to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
    best = result["best"]
    page = (f"<h2>Configurations</h2><p>Chosen: <b>{html.escape(best['name'])}</b> "
            f"({'ensemble of ' + ' and '.join(best['configurations']) if best['ensemble'] else 'one configuration'}), "
            f"by {html.escape(result['criterion'])}, on {result['cases']} cross-validation cases.</p>{table}")
    with atomic_path(path, suffix=".html") as tmp:
        Path(tmp).write_text(page)


def select_for_run(predictions: Mapping[str, Sequence[str | os.PathLike]], splits: str | os.PathLike,
                   folds: Sequence[int], data_dir: str | os.PathLike, *, plans: str | os.PathLike,
                   out: str | os.PathLike, table: str | os.PathLike,
                   model_info: str | os.PathLike | None = None) -> dict:
    """Rule `select_configuration`: `predictions` maps each configuration to its folds' folders of
    cross-validation predictions (fold `folds[i]` in the i-th). Several are scored with their pairs
    from the saved probabilities; one alone from its label maps, with the regions its models were
    trained with (`model_info`: a fold's model.json). Writes best_configuration.json (`out`) and
    its table (`table`, HTML)."""
    dataset = load_dataset(data_dir)
    expected = [case for fold in folds for case in load_fold(splits, int(fold))["val"]]
    names = list(predictions)
    labels = Plan.load(plans).labels
    refs = {c.id: c.label for c in dataset.training}
    if len(names) > 1:
        result = find_best_configuration(predictions, refs, labels, out, expected=expected)
    else:
        if model_info is None:
            raise ValueError(f"select_for_run: the model.json of a fold of {names[0]} is needed for its regions")
        info = ModelInfo.load(model_info)
        result = find_best_configuration(predictions, refs, labels, out, expected=expected,
                                         regions=info.regions, ending=dataset.file_ending)
    write_selection_html(result, table)
    return result
