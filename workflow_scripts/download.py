"""Rule `download`: make the raw dataset available and record what it holds."""
from unet.io.atomic import write_json
from unet.io.datasets import prepare_dataset
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    p = snakemake.params
    dataset = prepare_dataset(p.task, p.data_dir, p.demo)
    write_json(snakemake.output[0], {
        "task": p.task, "path": str(dataset.root), "modalities": list(dataset.modalities),
        "labels": {str(k): v for k, v in dataset.labels.items()},
        "training_cases": len(dataset.training), "test_cases": len(dataset.test),
    })
    print(f"{dataset.root}: {len(dataset.training)} training and {len(dataset.test)} test cases")
