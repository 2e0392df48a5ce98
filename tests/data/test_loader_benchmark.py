"""The loader benchmark (unet.bench.loader) on tiny cases, our side only (nnU-Net's is slow)."""
import json

import numpy as np

from unet.bench.loader import format_result, run
from unet.bench.synthetic import preprocessed_case


def test_synthetic_case_has_nested_labels():
    image, seg = preprocessed_case((24, 20, 22), 3, seed=0)
    assert image.shape == (24, 20, 22, 3) and image.dtype == np.float32
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert (seg >= 2).sum() < (seg >= 1).sum()  # label 2 inside label 1


def test_run_measures_our_pipeline(tmp_path):
    out = tmp_path / "loader.json"
    result = run(cores=1, seconds=0.5, out=out, n_cases=2, shape=(24, 20, 22), channels=2, patch=(16, 16, 16),
                 warmup=1, with_reference=False, work_dir=tmp_path)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    ours = result["ours"]
    assert ours["patches"] >= 2 and ours["patches_per_s"] > 0 and ours["per_core"] > 0
    assert result["ours_16_cores_extrapolated"] == 16 * ours["per_core"]
    assert "nnunet" not in result
    assert "patches/s" in format_result(result)
    assert not list(tmp_path.glob("loader-bench-*"))  # the generated cases are cleaned up
