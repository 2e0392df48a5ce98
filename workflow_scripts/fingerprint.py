"""Rule `fingerprint`: spacings, shapes and intensity statistics of the training cases."""
from unet.io.logs import output_to
from unet.preprocessing.fingerprint import write_fingerprint

with output_to(snakemake.log[0]):
    write_fingerprint(snakemake.params.data_dir, snakemake.output[0], workers=snakemake.threads)
