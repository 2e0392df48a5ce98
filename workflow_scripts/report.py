"""Rule `report`: summary.json across folds and the Dice plot."""
import pandas as pd

from unet.evaluation.plots import plot_dice
from unet.evaluation.summary import summarize
from unet.io.atomic import write_json
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    tables = [pd.read_csv(path) for path in snakemake.input]
    summary = summarize(tables)
    write_json(snakemake.output.summary, summary)
    plot_dice(pd.concat(tables, ignore_index=True), snakemake.output.plot)
    print(f"mean foreground Dice across folds: {summary['mean_foreground_dice']['all']}")
