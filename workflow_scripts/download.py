"""Rule `download`: download and extract an MSD task if it is not on disk (nothing for the other
sources); record where the raw dataset comes from."""
from unet.io.datasets import dataset_job_log, download_dataset

with dataset_job_log(snakemake.log[0]):
    download_dataset(snakemake.params.task, snakemake.params.data_dir, snakemake.output[0],
                     ingest=snakemake.params.ingest)
