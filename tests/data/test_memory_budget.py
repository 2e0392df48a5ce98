"""The input pipeline's decoded cases stay within the job's memory: large CT-like cases and a
small budget must not fill a 64-case shuffle buffer or an in-memory cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from unet.data.pipeline import CASES_IN_FLIGHT, case_buffers
from unet.data.shards import case_bytes, write_shards
from unet.io.atomic import save_npy

MB = 2**20
SHAPE = (192, 192, 128)  # 18.9 MB of float32 image + 4.7 MB of seg per case
N_CASES = 16


def test_small_datasets_are_cached_whole():
    buffers = case_buffers([50 * MB] * 12)  # the demo-sized default: unchanged behaviour
    assert buffers.cache and buffers.shuffle_cases == 12


def test_large_cases_get_a_buffer_that_fits_the_budget():
    buffers = case_buffers([300 * MB] * 200, 4000 * MB)  # a CT task, a 4 GB SLURM job
    assert not buffers.cache
    assert (buffers.shuffle_cases + CASES_IN_FLIGHT) * 300 * MB <= 4000 * MB
    assert buffers.shuffle_cases >= 1
    assert case_buffers([300 * MB] * 200, 100 * MB).shuffle_cases == 1  # never below one case


@pytest.fixture(scope="module")
def large_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        save_npy(root / "pre" / f"case{i:02d}.npy", rng.standard_normal((*SHAPE, 1), dtype=np.float32))
        seg = np.zeros(SHAPE, np.uint8)
        seg[40:60, 40:60, 40:60] = 1
        save_npy(root / "pre" / f"case{i:02d}_seg.npy", seg)
    write_shards(root / "pre", [f"case{i:02d}" for i in range(N_CASES)], root / "shards")
    return root / "shards"


def test_the_index_records_decoded_sizes(large_shards):
    sizes = case_bytes(large_shards, ["case00", "case03"])
    assert sizes == {"case00": int(np.prod(SHAPE)) * 5, "case03": int(np.prod(SHAPE)) * 5}


PEAK = textwrap.dedent("""
    import json, sys
    from unet.runtime import configure_tensorflow
    configure_tensorflow(2)  # the same thread pools whatever the calling process set
    from unet.data.pipeline import training_dataset

    def peak_rss():  # VmHWM: this process's own high-water mark (ru_maxrss inherits the parent's)
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024

    shard_dir, budget = sys.argv[1], json.loads(sys.argv[2])
    ids = [f"case{i:02d}" for i in range({n})]
    ds = training_dataset(shard_dir, ids, (32, 32, 32), 2, 0.33, seed=0, augment=False, patches_per_case=1,
                          threads=2, memory_bytes=budget)
    base = peak_rss()  # TensorFlow, before any case
    it = iter(ds)
    for _ in range(3 * {n}):  # every case decoded, three times over
        next(it)
    print(peak_rss() - base)
""").replace("{n}", str(N_CASES))


def _growth(shard_dir, budget) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run([sys.executable, "-c", PEAK, str(shard_dir), json.dumps(budget)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.split()[-1])


def test_peak_memory_follows_the_budget(large_shards):
    """Peak memory growth over a run that holds one case at a time (TensorFlow's own buffers, the
    case in flight): within the budget when bounded, the whole dataset with the default cache."""
    total = sum(case_bytes(large_shards, [f"case{i:02d}" for i in range(N_CASES)]).values())
    budget = 120 * MB  # 5 cases of 23.6 MB: no cache, a buffer of 1
    assert not case_buffers([total // N_CASES] * N_CASES, budget).cache
    floor = _growth(large_shards, 1)
    bounded = _growth(large_shards, budget)
    unbounded = _growth(large_shards, None)  # the default caches all 16 cases (377 MB)
    # tf.data's autotuning decodes a varying number of cases ahead (the floor moved between 116 and
    # 403 MB under load), so the default is compared with the bounded run, not with the floor.
    assert unbounded - bounded > 0.3 * total, \
        f"the default should have cached every case: {floor=} {bounded=} {unbounded=}"
    assert bounded - floor < budget, f"peak grew by {(bounded - floor) / MB:.0f} MB with a {budget / MB:.0f} MB budget"
