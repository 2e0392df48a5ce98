"""Rule `fingerprint`: spacings, shapes and intensity statistics of the training cases."""
from unet.io.atomic import write_json
from unet.io.logs import output_to
from unet.io.msd import load_dataset
from unet.preprocessing.fingerprint import compute_fingerprint

with output_to(snakemake.log[0]):
    fingerprint = compute_fingerprint(load_dataset(snakemake.params.data_dir), workers=snakemake.threads)
    write_json(snakemake.output[0], fingerprint)
