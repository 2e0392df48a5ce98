"""Rule `cascade_previous`: 3d_lowres' cross-validation segmentation of each training case on the
full-resolution preprocessed grid (unet/preprocessing/cascade.py)."""
from pathlib import Path

from unet.io.logs import output_to
from unet.preprocessing.plan import Plan

with output_to(snakemake.log[0]):
    from unet.preprocessing.cascade import write_previous_stage

    write_previous_stage(snakemake.input.predictions, Path(snakemake.input.geometry[0]).parent,
                         snakemake.params.case_ids, snakemake.output[0],
                         Plan.load(snakemake.input.plans, "3d_cascade_fullres"))
