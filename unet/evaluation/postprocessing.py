"""Choosing the postprocessing on the cross-validation predictions, by nnU-Net v2's rule
(`nnUNetv2_determine_postprocessing`); the chosen steps are applied by
`unet.inference.postprocess.apply_postprocessing`.

The one operation is "keep only the largest connected component" (full connectivity). Tried in
this order, each on the predictions as the steps kept so far left them:

1. all foreground labels together (one mask): kept if the foreground mean Dice rises and no
   class's mean Dice falls;
2. with more than one class, each class in turn (a label, or a region of a region-trained
   model, in their declared order): kept if that class's mean Dice rises.

"Rises" is strict: a step that changes nothing is not kept. Scores are those of
`unet.evaluation.cv` (nnU-Net's: nan for empty-empty, left out of the means). The result,
`postprocessing.json`, lists the steps to apply ("apply") and every step tried with the Dice of
each class before and after it ("steps").
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from unet.data.splits import load_fold
from unet.evaluation.cv import (by_class, case_dice, class_means, cv_files, foreground_mean,
                                foreground_values, json_number, scoring_classes)
from unet.evaluation.distances import bounding_box
from unet.evaluation.evaluate import Region
from unet.inference.model_info import load_model_set
from unet.inference.postprocess import OPERATION, keep_largest_component
from unet.io.atomic import load_npy, save_npy, write_json
from unet.io.labels import ignore_value
from unet.io.msd import load_dataset
from unet.io.images import NIFTI, load_label

CONNECTIVITY = "full"  # 26 neighbours in 3D, as skimage's `label` default in nnU-Net


@dataclass
class _Workspace:
    """Each case's prediction and reference, cropped to the box around both (components lie
    inside it and every voxel outside is background in both, so no score changes), in a folder
    of .npy files: the current predictions (the steps kept so far) and a step's candidates."""

    root: Path
    classes: Sequence[Region]
    ignore: int | None
    cases: list[str] = field(default_factory=list)

    def add(self, case: str, pred: np.ndarray, ref: np.ndarray) -> None:
        keep = ref != 0 if self.ignore is None else (ref != 0) & (ref != self.ignore)
        box = bounding_box(pred != 0, keep) or tuple(slice(0, 0) for _ in pred.shape)
        save_npy(self.root / f"{case}.npy", pred[box])
        save_npy(self.root / f"{case}_ref.npy", ref[box])
        self.cases.append(case)

    def scores(self, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """(N, C) Dice of the current predictions, or of `transform` of them; changed ones are
        kept as candidates ({case}_candidate.npy) for `accept`."""
        rows = []
        for case in self.cases:
            pred = load_npy(self.root / f"{case}.npy")
            candidate = self.root / f"{case}_candidate.npy"
            candidate.unlink(missing_ok=True)
            if transform is not None:
                changed = transform(pred)
                if not np.array_equal(changed, pred):
                    save_npy(candidate, changed)
                pred = changed
            rows.append(case_dice(pred, load_npy(self.root / f"{case}_ref.npy"), self.classes, self.ignore))
        return np.asarray(rows, dtype=float).reshape(len(self.cases), len(self.classes))

    def accept(self) -> None:
        for case in self.cases:
            candidate = self.root / f"{case}_candidate.npy"
            if candidate.exists():
                os.replace(candidate, self.root / f"{case}.npy")


def determine_postprocessing(predictions: str | os.PathLike | Sequence[str | os.PathLike],
                             ref_paths: Mapping[str, str | os.PathLike], labels: Mapping[int, str],
                             out: str | os.PathLike, *, regions: Mapping[str, Sequence[int]] | None = None,
                             expected: Sequence[str] | None = None, ending: str = NIFTI) -> dict:
    """Choose the postprocessing from the cross-validation label maps in `predictions` (one
    folder or the folds' folders of `{case}{ending}`, the dataset's file_ending) against
    `ref_paths[case]`; write
    postprocessing.json to `out` (atomically) and return it.

    `labels`: the plan's {value: name}; `regions`: the regions the model was trained on (their
    scores decide, as in nnU-Net), None for a label model; `expected`: the folds' validation
    cases, which must be exactly the predicted ones.
    """
    files = cv_files(predictions, ending, expected)
    unknown = sorted(set(files) - set(ref_paths))
    if unknown:
        raise ValueError(f"no reference label for the predicted case(s) {unknown}")
    classes = scoring_classes(labels, regions)
    foreground = foreground_values(labels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".postprocessing-", dir=out.parent) as tmp:
        work = _Workspace(Path(tmp), classes, ignore_value(labels))
        for case, path in files.items():
            pred, _ = load_label(path)
            ref, _ = load_label(ref_paths[case])
            if pred.shape != ref.shape:
                raise ValueError(f"shape mismatch: prediction {path} has shape {pred.shape}, "
                                 f"reference {ref_paths[case]} has shape {ref.shape}")
            work.add(case, pred, ref)
        start = class_means(work.scores(), len(classes))
        current, steps = start, []

        def attempt(name: str, values: Sequence[int], keep: Callable[[np.ndarray, np.ndarray], bool]) -> None:
            nonlocal current
            after = class_means(work.scores(lambda seg: keep_largest_component(seg, values)), len(classes))
            kept = bool(keep(current, after))
            steps.append({"step": name, "operation": OPERATION, "labels": [int(v) for v in values],
                          "kept": kept,
                          "foreground_dice_before": json_number(foreground_mean(current)),
                          "foreground_dice_after": json_number(foreground_mean(after)),
                          "dice_before": by_class(classes, current), "dice_after": by_class(classes, after)})
            print(f"{OPERATION} {name} {list(values)}: foreground Dice {foreground_mean(current):.5f} -> "
                  f"{foreground_mean(after):.5f}: {'kept' if kept else 'dropped'}")
            if kept:
                work.accept()
                current = after

        # Improves the foreground mean and makes no class worse (a nan comparison is no objection).
        attempt("all foreground", foreground,
                lambda before, after: foreground_mean(after) > foreground_mean(before)
                and not np.any(after < before))
        if len(classes) > 1:
            for index, cls in enumerate(classes):
                attempt(cls.name, cls.labels, lambda before, after, i=index: after[i] > before[i])

    spec = {
        "operation": OPERATION,
        "connectivity": CONNECTIVITY,
        "scored": "regions" if regions else "labels",
        "classes": {c.name: list(c.labels) for c in classes},
        "cases": len(files),
        "apply": [{"operation": OPERATION, "labels": s["labels"]} for s in steps if s["kept"]],
        "foreground_dice_before": json_number(foreground_mean(start)),
        "foreground_dice_after": json_number(foreground_mean(current)),
        "dice_before": by_class(classes, start),
        "dice_after": by_class(classes, current),
        "steps": steps,
    }
    write_json(out, spec)
    return spec


def postprocessing_table(spec: Mapping) -> pd.DataFrame:
    """One row per step tried (postprocessing.json's "steps"): its labels, whether it was kept,
    and the mean Dice of each class and of the foreground before -> after it."""

    def change(before: float | None, after: float | None) -> str:
        return " -> ".join("n/a" if v is None else f"{v:.4f}" for v in (before, after))

    rows = {}
    for step in spec["steps"]:
        row = {"labels": " ".join(str(v) for v in step["labels"]), "kept": "yes" if step["kept"] else "no",
               "foreground": change(step["foreground_dice_before"], step["foreground_dice_after"])}
        row.update({name: change(step["dice_before"][name], step["dice_after"][name])
                    for name in step["dice_before"]})
        rows[step["step"]] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def postprocessing_for_run(predictions: Sequence[str | os.PathLike], splits: str | os.PathLike,
                           folds: Sequence[int], data_dir: str | os.PathLike, out: str | os.PathLike, *,
                           plans: str | os.PathLike, models: Sequence[str | os.PathLike]) -> dict:
    """Rule `postprocessing`: `predictions[i]` is fold `folds[i]`'s folder of validation
    predictions, made by the network `models[i]`; the references are the dataset's in `data_dir`,
    the labels the plan's, the classes scored the regions the networks were trained with (their
    model.json), if any."""
    dataset = load_dataset(data_dir)
    expected = [case for fold in folds for case in load_fold(splits, int(fold))["val"]]
    trained = load_model_set(plans, models)
    return determine_postprocessing(predictions, {c.id: c.label for c in dataset.training},
                                    trained.plan.labels, out, expected=expected, regions=trained.regions,
                                    ending=dataset.file_ending)
