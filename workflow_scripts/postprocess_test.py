"""Rule `postprocess_test`: the selected candidate's postprocessing.json applied to its test-set
predictions."""
from unet.inference.postprocess import postprocess_folder
from unet.io.logs import output_to

with output_to(snakemake.log[0]):
    print(f"test-set predictions of {snakemake.input.predictions}, postprocessing of {snakemake.input.postprocessing}")
    postprocess_folder(snakemake.input.predictions, snakemake.output[0], snakemake.input.postprocessing)
