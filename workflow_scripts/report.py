"""Rule `report`: summary.json/summary.html across folds, box plots and the worst-case mosaic."""
from unet.evaluation.report import write_report
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    out = snakemake.output
    write_report(snakemake.input.tables, snakemake.input.predictions, snakemake.params.folds,
                 snakemake.params.data_dir, summary_json=out.summary, summary_html=out.table,
                 dice_png=out.plot, hd95_png=out.hd95, worst_png=out.worst, empty=snakemake.params.empty,
                 postprocessing=snakemake.input.postprocessing)
