"""Rule `postprocess_test`: postprocessing.json applied to the test-set predictions."""
from unet.inference.postprocess import postprocess_folder
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    postprocess_folder(snakemake.input.predictions, snakemake.output[0], snakemake.input.postprocessing)
