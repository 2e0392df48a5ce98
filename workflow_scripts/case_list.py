"""Checkpoint `case_list`: the cases of a dataset that `download` has just made available."""
import sys

from unet.io.atomic import write_json
from unet.io.logs import output_to
from unet.io.msd import DatasetError, load_dataset

with output_to(snakemake.log[0]):
    try:
        dataset = load_dataset(snakemake.params.data_dir)
    except DatasetError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    write_json(snakemake.output[0], {"training": [c.id for c in dataset.training],
                                     "test": [c.id for c in dataset.test]})
