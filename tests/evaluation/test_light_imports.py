"""The evaluate and report stages import no TensorFlow, Keras or Snakemake (DESIGN.md)."""

import subprocess
import sys

MODULES = ["unet.evaluation.metrics", "unet.evaluation.distances", "unet.evaluation.evaluate",
           "unet.evaluation.summary", "unet.evaluation.plots", "unet.evaluation.mosaic",
           "unet.evaluation.report", "unet.evaluation.cv", "unet.evaluation.postprocessing",
           "unet.evaluation.selection"]


def test_evaluation_modules_stay_light():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {"unet", "scipy", "numpy"} <= loaded
    assert not loaded & {"tensorflow", "keras", "snakemake"}, sorted(loaded)
