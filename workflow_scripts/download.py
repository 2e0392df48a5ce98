"""Rule `download`: download and extract an MSD task if it is not on disk (nothing for the other
sources); record where the raw dataset comes from."""
import sys

from unet.io.atomic import write_json
from unet.io.datasets import fetch_dataset
from unet.io.download import DownloadError
from unet.io.logs import output_to
from unet.io.msd import DatasetError

with output_to(snakemake.log[0]):
    p = snakemake.params
    try:
        source = fetch_dataset(p.task, p.data_dir, p.ingest)
    except (DatasetError, DownloadError) as exc:
        # A problem with the data, not a bug: the message (Snakemake shows the log) says what
        # to fix, a traceback would only bury it.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    write_json(snakemake.output[0], {"task": p.task, "path": p.data_dir, "source": source})
    print(f"{p.data_dir}: source {source}")
