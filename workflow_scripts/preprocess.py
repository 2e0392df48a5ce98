"""Rule `preprocess`: one training case cropped, normalized and resampled as the plan says."""
from pathlib import Path

from unet.io.logs import output_to
from unet.io.msd import load_dataset
from unet.preprocessing.planning import Plan
from unet.preprocessing.preprocess import preprocess_case

with output_to(snakemake.log[0]):
    case = load_dataset(snakemake.params.data_dir).case(snakemake.wildcards.case)
    geometry = preprocess_case(case, Plan.load(snakemake.input.plans), Path(snakemake.output.image).parent)
    print(f"{case.id}: crop {geometry.crop_box}, resampled to {geometry.resampled_shape}")
