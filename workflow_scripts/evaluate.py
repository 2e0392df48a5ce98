"""Rule `evaluate`: per-case, per-label (and region) metrics of one fold's validation predictions."""
from unet.data.splits import load_fold
from unet.evaluation.evaluate import evaluate_folder, evaluation_regions, write_table
from unet.io.logs import output_to
from unet.io.msd import load_dataset
from unet.preprocessing.plan import Plan

with output_to(snakemake.log[0]):
    dataset = load_dataset(snakemake.params.data_dir)
    regions = evaluation_regions(snakemake.params.regions, dataset.regions)
    print(f"regions: {[(r.name, r.labels) for r in regions]}; empty structures: "
          f"{snakemake.params.empty}")
    table = evaluate_folder(snakemake.input.predictions, {c.id: c.label for c in dataset.training},
                            Plan.load(snakemake.input.plans).labels, regions,
                            fold=int(snakemake.wildcards.fold), empty=snakemake.params.empty,
                            expected=load_fold(snakemake.input.splits, int(snakemake.wildcards.fold))["val"])
    write_table(table, snakemake.output[0])
