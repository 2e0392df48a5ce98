"""Rule `report`: summary.json/summary.html across folds, box plots and the worst-case mosaic."""
from pathlib import Path

import pandas as pd

from unet.evaluation.evaluate import NIFTI_SUFFIX
from unet.evaluation.mosaic import worst_case_mosaic
from unet.evaluation.plots import plot_metric
from unet.evaluation.summary import summarize, write_summary_html
from unet.io.atomic import write_json
from unet.io.logs import output_to
from unet.io.msd import load_dataset

with output_to(snakemake.log[0]):
    tables = [pd.read_csv(path) for path in snakemake.input.tables]
    summary = summarize(tables, empty=snakemake.params.empty)
    write_json(snakemake.output.summary, summary)
    write_summary_html(summary, snakemake.output.table)
    cases = pd.concat(tables, ignore_index=True)
    plot_metric(cases, "dice", snakemake.output.plot)
    plot_metric(cases, "hd95", snakemake.output.hd95)

    dataset = load_dataset(snakemake.params.data_dir)
    predictions = {(case.id, int(fold)): Path(folder) / f"{case.id}{NIFTI_SUFFIX}"
                   for fold, folder in zip(snakemake.params.folds, snakemake.input.predictions)
                   for case in dataset.training}
    worst = worst_case_mosaic(cases, {c.id: c.image for c in dataset.training},
                              {c.id: c.label for c in dataset.training}, predictions,
                              dataset.labels, snakemake.output.worst)
    print("worst cases:\n" + worst.to_string(index=False))
    print(f"mean foreground Dice across folds: {summary['mean_foreground_dice']['all']}")
