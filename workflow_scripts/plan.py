"""Rule `plan`: plans.json from the fingerprint and the config's `plan:` overrides."""
from unet.io.logs import output_to
from unet.preprocessing.planning import write_plans

with output_to(snakemake.log[0]):
    write_plans(snakemake.input[0], snakemake.output[0], overrides=snakemake.params.overrides)
