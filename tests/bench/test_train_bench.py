"""The training benchmark's FLOP count on a hand-computed model, and a real timed grid cell."""

import dataclasses

import keras
import pytest

from unet.bench.flops import conv_flops, forward_flops
from unet.bench.train import (benchmark_plan, compile_step, default_plan, format_row, loop_step, result_row,
                              time_steps)


def test_conv_flops_is_two_per_multiply_add():
    assert conv_flops((3, 3, 3), 2, 4, 10) == 2 * 27 * 2 * 4 * 10


def test_forward_flops_of_a_tiny_model_counted_by_hand():
    inputs = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(2, 3, padding="same", use_bias=False)(inputs)       # 8^3 out
    x = keras.layers.GroupNormalization(groups=2)(x)                            # not counted
    x = keras.layers.Conv3D(4, 3, strides=2, padding="same", use_bias=False)(x)  # 4^3 out
    x = keras.layers.Conv3DTranspose(2, 2, strides=2, use_bias=False)(x)        # 4^3 in, 8^3 out
    x = keras.layers.Conv3D(3, 1)(x)                                            # 1x1 head, 8^3 out
    model = keras.Model(inputs, x)
    by_hand = (2 * 27 * 1 * 2 * 512     # 55296
               + 2 * 27 * 2 * 4 * 64    # 27648
               + 2 * 8 * 4 * 2 * 64     # 8192: each input voxel times the 2x2x2 kernel
               + 2 * 1 * 2 * 3 * 512)   # 6144
    assert forward_flops(model, (8, 8, 8, 1)) == by_hand == 97280
    # The open spatial size is made concrete per call: twice the edge, 8x the FLOPs.
    assert forward_flops(model, (16, 16, 16, 1)) == 8 * by_hand


def test_benchmark_plan_keeps_the_filters_and_replans_the_topology():
    plan = benchmark_plan(default_plan(), (32, 32, 32))
    assert plan.patch_size == (32, 32, 32)
    assert plan.filters == (32, 64, 128, 256) and len(plan.strides) == len(plan.kernels) == 4
    with pytest.raises(ValueError, match="--patch.*nearest valid"):
        benchmark_plan(default_plan(), (30, 32, 32))


@pytest.mark.parametrize("make", [loop_step, compile_step], ids=["loop", "compile"])
def test_a_grid_cell_times_real_training_steps(make):
    plan = benchmark_plan(dataclasses.replace(default_plan(2, 3), filters=(4, 8)), (16, 16, 16))
    step = make(plan, 2, False, False)
    seconds = time_steps(step, warmup=1, steps=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    row = result_row("tensorflow", "x", False, False, 2, plan.patch_size, seconds, 1_000_000, warmup=1)
    assert row["throughput_img_s"] == pytest.approx(2 * 3 / sum(seconds))
    assert row["achieved_tflop_s"] == pytest.approx(3e6 * row["throughput_img_s"] / 1e12)
    assert row["latency_ms"]["mean"] <= row["latency_ms"]["p99"] <= 1000 * max(seconds) + 1e-9
    assert "| 2 | 16x16x16 |" in format_row(row)


def test_amp_means_bfloat16_without_a_gpu():
    from unet.bench.train import device_amps

    assert device_amps([False, True], gpu=True) == [False, True]
    assert device_amps([False, True, "float16"], gpu=False) == [False, "bfloat16", "float16"]


def test_the_matmul_peak_is_a_plausible_rate():
    import time

    import numpy as np

    from unet.bench.peak import matmul_peak, numpy_matmul_flop_s

    n = 1024
    a = np.ones((n, n), np.float32)
    a @ a
    seconds = []
    for _ in range(20):  # the best of many, as the subprocess: other jobs on the machine only slow it down
        start = time.perf_counter()
        a @ a
        seconds.append(time.perf_counter() - start)
    direct = 2 * n ** 3 / min(seconds)
    rate = numpy_matmul_flop_s(1, size=n, repeats=20)
    # The same product timed here (numpy's default threads) and in the subprocess (one): same order.
    assert 0.1 * direct <= rate <= 10 * direct
    peak = matmul_peak(1, size=n, repeats=2)
    assert peak["gflop_s"] == max(peak["numpy_gflop_s"], peak["tensorflow_onednn_gflop_s"]) > 0
    assert peak["threads"] == 1 and peak["matmul_size"] == n


def test_the_json_carries_machine_and_peak_and_each_row_its_fraction(monkeypatch):
    import functools
    import json

    from unet.bench import peak as peak_module, train
    from unet.bench.train import benchmark_train, format_table

    monkeypatch.setattr(train, "matmul_peak", functools.partial(peak_module.matmul_peak, size=256, repeats=1))
    plan = dataclasses.replace(default_plan(2, 3), filters=(4, 8))
    result = json.loads(json.dumps(benchmark_train(plan, (16, 16, 16), 2, [False], [False], warmup=1, steps=2,
                                                   jax=False, threads=1)))
    machine, peak = result["machine"], result["peak"]
    assert set(machine) == {"cpu", "vector_extensions", "threads", "onednn"}
    assert machine["cpu"] and machine["threads"] == 1 and isinstance(machine["onednn"], bool)
    assert peak["threads"] == 1 and peak["gflop_s"] > 0
    assert len(result["rows"]) == 2
    for row in result["rows"]:
        assert row["peak_fraction"] == pytest.approx(row["achieved_tflop_s"] * 1e3 / peak["gflop_s"])
        assert f"| {row['peak_fraction']:.1%} |" in format_row(row)
    table = format_table(result)
    assert machine["cpu"] in table and "matmul peak" in table and "Of peak" in table


def test_the_rule_times_the_plans_network_and_records_plans_and_fold(monkeypatch, tmp_path, capsys):
    import functools
    import json

    from unet.bench import peak as peak_module, train
    from unet.io.atomic import write_json

    monkeypatch.setattr(train, "matmul_peak", functools.partial(peak_module.matmul_peak, size=256, repeats=1))
    plan = dataclasses.replace(default_plan(2, 3), filters=(4, 8), patch_size=(16, 16, 16))
    write_json(tmp_path / "plans.json", plan.to_json())
    out = tmp_path / "benchmarks" / "train.json"
    summary = train.run_benchmark(tmp_path / "plans.json", out, fold=2, patch_size=None, batch_size=1,
                                  amps=[False], xlas=[False], warmup=1, steps=2, jax=False, threads=1)
    result = json.loads(out.read_text())
    assert result["plans"] == str(tmp_path / "plans.json") and result["fold"] == 2
    assert result["network"]["patch_size"] == [16, 16, 16]  # the plan's patch when none is given
    assert [(r["batch_size"], r["path"]) for r in result["rows"]] == [(1, "loop"), (1, "compile")]
    table = train.format_table(result)
    assert table in capsys.readouterr().out  # into the job's log
    assert summary == f"benchmark_train ({tmp_path / 'plans.json'}):\n{table}\nwritten to {out}"
