"""Rule `preprocess`: one training case cropped, normalized and resampled as the plan says, with
its foreground locations."""
import time
from pathlib import Path

from unet.io.logs import output_to
from unet.io.msd import load_dataset
from unet.preprocessing.plan import Plan
from unet.preprocessing.preprocess import preprocess_case

with output_to(snakemake.log[0]):
    start = time.perf_counter()
    case = load_dataset(snakemake.params.data_dir).case(snakemake.wildcards.case)
    geometry = preprocess_case(case, Plan.load(snakemake.input.plans), Path(snakemake.output.image).parent)
    print(f"{case.id}: crop {geometry.crop_box}, {geometry.cropped_shape} -> {geometry.resampled_shape} "
          f"at spacing {geometry.target_spacing} in {time.perf_counter() - start:.1f} s")
