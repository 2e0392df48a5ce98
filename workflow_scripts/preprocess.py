"""Rule `preprocess`: one training case cropped, normalized and resampled as the plan says, with
its foreground locations."""
from pathlib import Path

from unet.io.logs import output_to
from unet.preprocessing.preprocess import preprocess_dataset_case

with output_to(snakemake.log[0]):
    preprocess_dataset_case(snakemake.params.data_dir, snakemake.wildcards.case, snakemake.input.plans,
                            Path(snakemake.output.image).parent, snakemake.params.configuration)
