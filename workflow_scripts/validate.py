"""Rule `validate`: generate the demo or convert an ingest if needed, check every file of the
dataset, and record what it holds."""
import sys

from unet.io.atomic import write_json
from unet.io.datasets import prepare_dataset
from unet.io.download import DownloadError
from unet.io.logs import output_to
from unet.io.msd import DatasetError

with output_to(snakemake.log[0]):
    p = snakemake.params
    try:
        # The download, if any, is done (rule `download`): here it only finds the folder complete.
        dataset = prepare_dataset(p.task, p.data_dir, p.demo, p.ingest, workers=snakemake.threads)
    except (DatasetError, DownloadError) as exc:
        # A problem with the data, not a bug: the message (Snakemake shows the log) says what
        # to fix, a traceback would only bury it.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    write_json(snakemake.output[0], {
        "task": p.task, "path": str(dataset.root), "modalities": list(dataset.modalities),
        "labels": {str(k): v for k, v in dataset.labels.items()},
        # Read by train/predict for `train.regions: dataset`.
        "regions": {name: list(values) for name, values in dataset.regions.items()},
        "training_cases": len(dataset.training), "test_cases": len(dataset.test),
        **({"ingest": dict(p.ingest)} if p.ingest else {}),
    })
    print(f"{dataset.root}: {len(dataset.training)} training and {len(dataset.test)} test cases")
