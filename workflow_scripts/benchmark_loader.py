"""Rule `benchmark_loader`: augmented training patches per second (and per core), our tf.data
pipeline against nnU-Net v2's loader and transforms, on generated cases."""
from pathlib import Path

from unet.io.logs import output_to
from unet.runtime import configure_tensorflow

configure_tensorflow(snakemake.threads)
with output_to(snakemake.log[0]):
    from unet.bench.loader import format_result, run

    p = snakemake.params
    out = Path(snakemake.output[0])
    result = run(snakemake.threads, p.seconds, out, n_cases=p.cases, shape=tuple(p.case_shape),
                 patch=tuple(p.patch_size), work_dir=out.parent,
                 nnunet_venv=Path(snakemake.input.nnunet_venv).parent)  # the input is the stamp inside it
    text = format_result(result)
    print(text)
print(f"{text}\nwritten to {out}")
