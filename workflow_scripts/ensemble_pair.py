"""Rule `ensemble_pair`: two configurations' predictions of the same cases, probabilities averaged."""
from unet.evaluation.choice import write_ensemble
from unet.io.atomic import read_json
from unet.io.images import NIFTI
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    ending = read_json(snakemake.input.ready).get("file_ending", NIFTI)
    write_ensemble([snakemake.input.first, snakemake.input.second], snakemake.output[0], ending)
