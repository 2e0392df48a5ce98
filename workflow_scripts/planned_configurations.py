"""Checkpoint `planned_configurations`: the configurations plans.json holds -> configurations.json."""
from unet.io.atomic import read_json, write_json
from unet.io.logs import output_to
from unet.preprocessing.plan import configuration_names

with output_to(snakemake.log[0]):
    names = list(configuration_names(read_json(snakemake.input[0])))
    print(f"planned: {', '.join(names)}")
    write_json(snakemake.output[0], names)
