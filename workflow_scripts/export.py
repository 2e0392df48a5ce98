"""Rule `export`: the run's folds as one model archive (unet/inference/archive.py)."""
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    from unet.inference.archive import export_archive

    p = snakemake.params
    print(export_archive(p.results, snakemake.output[0], folds=p.folds, checkpoint=p.checkpoint,
                         configuration=snakemake.wildcards.configuration,
                         config=snakemake.config))
