"""Rule `validate`: generate the demo or convert an ingest if needed, check every file of the
dataset, and record what it holds."""
from unet.io.datasets import dataset_job_log, write_dataset_ok

with dataset_job_log(snakemake.log[0]):
    p = snakemake.params
    write_dataset_ok(p.task, p.data_dir, snakemake.output[0], demo=p.demo, ingest=p.ingest,
                     workers=snakemake.threads)
