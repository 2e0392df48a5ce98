"""The `report` stage: from the per-fold tables, the summary across folds (summary.json and
summary.html), box plots of Dice and HD95, and the mosaic of the worst cases, which also reads
the raw images, the references (from the dataset) and the predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from unet.evaluation.mosaic import worst_case_mosaic
from unet.evaluation.plots import plot_metric
from unet.evaluation.postprocessing import postprocessing_table
from unet.evaluation.summary import summarize, write_summary_html
from unet.io.atomic import read_json, write_json
from unet.io.msd import load_dataset

def write_report(tables: Sequence[str | os.PathLike], predictions: Sequence[str | os.PathLike],
                 folds: Sequence[int], data_dir: str | os.PathLike, *, summary_json: str | os.PathLike,
                 summary_html: str | os.PathLike, dice_png: str | os.PathLike, hd95_png: str | os.PathLike,
                 worst_png: str | os.PathLike, empty: str = "nan",
                 postprocessing: str | os.PathLike | None = None) -> dict:
    """Write the report of the folds `folds`: `tables[i]` is fold `folds[i]`'s evaluation CSV,
    `predictions[i]` its folder of predictions; the cases are those of the dataset in
    `data_dir`. `empty`: the evaluation's convention for empty structures. With
    `postprocessing` (postprocessing.json), summary.html also shows the Dice before and after
    each step tried. Returns the summary."""
    frames = [pd.read_csv(path) for path in tables]
    summary = summarize(frames, empty=empty)
    write_json(summary_json, summary)
    extra = []
    if postprocessing is not None:
        extra.append(("Postprocessing: mean cross-validation Dice before -> after each step tried "
                      "(nnU-Net's scores: both empty = left out)", postprocessing_table(read_json(postprocessing))))
    write_summary_html(summary, summary_html, extra)
    cases = pd.concat(frames, ignore_index=True)
    plot_metric(cases, "dice", dice_png)
    plot_metric(cases, "hd95", hd95_png)

    dataset = load_dataset(data_dir)
    files = {(case.id, int(fold)): Path(folder) / f"{case.id}{dataset.file_ending}"
             for fold, folder in zip(folds, predictions) for case in dataset.training}
    worst = worst_case_mosaic(cases, {c.id: c.image for c in dataset.training},
                              {c.id: c.label for c in dataset.training}, files,
                              dataset.labels, worst_png)
    print("worst cases:\n" + worst.to_string(index=False))
    print(f"mean foreground Dice across folds: {summary['mean_foreground_dice']['all']}")
    return summary
