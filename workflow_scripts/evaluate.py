"""Rule `evaluate`: per-case, per-label (and region) Dice of one fold's validation predictions."""
from unet.evaluation.evaluate import Region, evaluate_folder, write_table
from unet.io.logs import output_to
from unet.io.msd import load_dataset
from unet.preprocessing.planning import Plan

with output_to(snakemake.log[0]):
    dataset = load_dataset(snakemake.params.data_dir)
    regions = [Region(name, tuple(values)) for name, values in snakemake.params.regions.items()]
    table = evaluate_folder(snakemake.input.predictions, {c.id: c.label for c in dataset.training},
                            Plan.load(snakemake.input.plans).labels, regions, fold=int(snakemake.wildcards.fold))
    write_table(table, snakemake.output[0])
