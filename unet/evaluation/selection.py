"""Choosing the configuration, or the ensemble of two, by cross-validation, by nnU-Net v2's rule
(`nnUNetv2_find_best_configuration`).

Each configuration brings the probabilities of its cross-validation predictions: `{case}.npz`
files as `unet.inference.probabilities.save_probabilities` writes them (with
`predict.save_probabilities: true`), in its folds' folders. Every configuration and every pair of
configurations is scored on the same cases: a pair averages the two probability maps of a case
before turning them into labels (argmax over the classes, or for region models the regions
thresholded and painted in `unet.inference.regions`'s order). The winner has the highest foreground mean Dice
(`unet.evaluation.cv`); on a tie the first candidate wins, and single configurations come before
pairs (the simpler choice, as in nnU-Net). `best_configuration.json` records the winner and every
candidate's scores.

nnU-Net then chooses the postprocessing on the winner's cross-validation predictions
(`unet.evaluation.postprocessing`); for a pair that needs the pair's label maps, which
`unet.inference.probabilities.ensemble_labels` gives case by case.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from unet.evaluation.cv import by_class, case_dice, class_means, cv_files, foreground_mean, json_number, \
    scoring_classes
from unet.inference.probabilities import Probabilities, average
from unet.io.atomic import write_json
from unet.io.labels import ignore_value
from unet.io.images import load_label

Folders = str | os.PathLike | Sequence[str | os.PathLike]


def _load_prediction(path: Path) -> "Probabilities | np.ndarray":
    """A case's saved probabilities ({case}.npz), or its label map."""
    return Probabilities.load(path) if path.name.endswith(".npz") else load_label(path)[0]


@dataclass(frozen=True)
class Candidate:
    """A configuration or an ensemble of several, by name."""

    configurations: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(self.configurations)


def candidates(names: Sequence[str], allow_ensembles: bool = True) -> list[Candidate]:
    """Every configuration, then every pair (in the given order)."""
    singles = [Candidate((n,)) for n in names]
    pairs = [Candidate(pair) for pair in itertools.combinations(names, 2)] if allow_ensembles else []
    return singles + pairs


def find_best_configuration(configurations: Mapping[str, Folders], ref_paths: Mapping[str, str | os.PathLike],
                            labels: Mapping[int, str], out: str | os.PathLike, *,
                            allow_ensembles: bool = True, expected: Sequence[str] | None = None,
                            regions: Mapping[str, Sequence[int]] | None = None, ending: str = ".npz") -> dict:
    """Score each configuration of `configurations` ({name: its folds' folders of {case}.npz})
    and each pair on the cross-validation cases against `ref_paths[case]`, write
    best_configuration.json to `out` (atomically) and return it.

    `labels`: the plan's {value: name} (names, the ignore label); the classes scored are the
    labels, or the regions of region models. Every configuration must have predicted the same
    cases (with `expected`, exactly those). A single configuration, with nothing to average, may be
    scored from its label maps instead: `ending` the dataset's file ending, `regions` those the
    models were trained with (label maps do not record them)."""
    if not configurations:
        raise ValueError("find_best_configuration: no configurations given")
    names = list(configurations)
    if ending != ".npz" and len(names) > 1:
        raise ValueError(f"several configurations ({', '.join(names)}) are chosen between by their saved "
                         f"probabilities ({{case}}.npz), not by label maps ({ending})")
    files = {name: cv_files(folders, ending, expected) for name, folders in configurations.items()}
    cases = sorted(files[names[0]])
    for name in names[1:]:
        if sorted(files[name]) != cases:
            differ = sorted(set(cases) ^ set(files[name]))
            raise ValueError(f"configurations {names[0]!r} and {name!r} predicted different cases: {differ}; "
                             f"they must be scored on the same cross-validation cases")
    unknown = sorted(set(cases) - set(ref_paths))
    if unknown:
        raise ValueError(f"no reference label for the predicted case(s) {unknown}")

    ignore = ignore_value(labels)
    tried = candidates(names, allow_ensembles)
    rows: dict[Candidate, list[np.ndarray]] = {c: [] for c in tried}
    regions = classes = None
    for case in cases:
        ref, _ = load_label(ref_paths[case])
        # One case's probabilities of every configuration at once (K x the image each).
        loaded = {name: _load_prediction(files[name][case]) for name in names}
        if classes is None:
            first = loaded[names[0]]
            regions = first.regions if isinstance(first, Probabilities) else regions
            classes = scoring_classes(labels, regions)
        for candidate in tried:
            members = [loaded[n] for n in candidate.configurations]
            pred = members[0] if len(members) == 1 else average(members)
            pred = pred.labels() if isinstance(pred, Probabilities) else pred
            if pred.shape != ref.shape:
                raise ValueError(f"shape mismatch: {candidate.name} predicts case {case} with shape "
                                 f"{pred.shape}, reference {ref_paths[case]} has shape {ref.shape}")
            rows[candidate].append(case_dice(pred, ref, classes, ignore))

    scores, means = [], {}
    for candidate in tried:
        means[candidate] = class_means(rows[candidate], len(classes))
        scores.append({"name": candidate.name, "configurations": list(candidate.configurations),
                       "foreground_dice": json_number(foreground_mean(means[candidate])),
                       "dice": by_class(classes, means[candidate])})
        print(f"{candidate.name}: foreground Dice {foreground_mean(means[candidate]):.5f}")
    # max() keeps the first of equal scores; an undefined (nan) score never wins.
    ranked = [c for c in tried if np.isfinite(foreground_mean(means[c]))] or tried
    winner = max(ranked, key=lambda c: np.nan_to_num(foreground_mean(means[c]), nan=-1.0))
    best = scores[tried.index(winner)]
    result = {
        "best": {"name": best["name"], "configurations": best["configurations"],
                 "ensemble": len(best["configurations"]) > 1, "foreground_dice": best["foreground_dice"]},
        "criterion": "highest mean foreground Dice on the cross-validation cases (nnU-Net's "
                     "foreground_mean); ties: the first candidate, single configurations first",
        "scored": "regions" if regions else "labels",
        "classes": {c.name: list(c.labels) for c in classes},
        "cases": len(cases),
        "candidates": scores,
    }
    print(f"best: {best['name']} (foreground Dice {best['foreground_dice']})")
    write_json(Path(out), result)
    return result
