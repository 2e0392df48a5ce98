"""Rule `ensemble`: the test images (imagesTs), probabilities averaged over the trained folds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_NUM_INTRAOP_THREADS"] = str(snakemake.threads)

from pathlib import Path  # noqa: E402

from unet.inference.predict import PredictSettings, predict_cases, raw_inputs  # noqa: E402
from unet.io.logs import output_to  # noqa: E402
from unet.io.msd import load_dataset  # noqa: E402
from unet.preprocessing.planning import Plan  # noqa: E402

with output_to(snakemake.log[0]):
    plan = Plan.load(snakemake.input.plans)
    cases = load_dataset(snakemake.params.data_dir).test
    out_dir = Path(snakemake.output[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    predict_cases(list(snakemake.input.models), raw_inputs(cases, plan), len(cases), out_dir,
                  plan.patch_size, plan.label_values, PredictSettings.from_config(snakemake.params.predict))
