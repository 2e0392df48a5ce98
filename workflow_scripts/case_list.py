"""Checkpoint `case_list`: the cases of a dataset that `download` has just made available."""
from unet.io.datasets import dataset_job_log, write_case_list

with dataset_job_log(snakemake.log[0]):
    write_case_list(snakemake.params.data_dir, snakemake.output[0])
