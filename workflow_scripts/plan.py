"""Rule `plan`: plans.json from the fingerprint and the config's `plan:` overrides."""
from unet.io.atomic import read_json, write_json
from unet.io.logs import output_to
from unet.preprocessing.planning import make_plans

with output_to(snakemake.log[0]):
    plans = make_plans(read_json(snakemake.input[0]), dict(snakemake.params.overrides))
    write_json(snakemake.output[0], plans)
    for name, plan in (("planned", plans["planned"]), ("effective", plans)):
        print(name, {k: plan[k] for k in ("spacing", "median_shape", "patch_size", "batch_size", "filters",
                                          "strides", "gpu_memory_gb", "memory_estimate_gb")})
    print("overrides", plans["overrides"])
