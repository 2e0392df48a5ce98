import json
import math
import time

import numpy as np
import pytest

from unet.inference.benchmark import TimedPredictor, benchmark_predict, format_tables, patch_benchmark, \
    run_benchmark, runtime_benchmark
from unet.inference.predict import PredictSettings, ensemble_predictor, load_models, preprocessed_inputs
from unet.inference.runtimes import available_runtimes
from unet.inference.sliding_window import window_starts
from unet.io.atomic import write_json

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _sleepy(batch):
    time.sleep(0.002)
    return np.ones(batch.shape[:-1] + (3,), np.float32) / 3


def test_timed_predictor_times_every_call():
    timed = TimedPredictor(_sleepy)
    out = timed(np.zeros((2, 4, 4, 4, 1), np.float32))
    timed(np.zeros((1, 4, 4, 4, 1), np.float32))
    assert out.shape == (2, 4, 4, 4, 3)
    assert timed.batch_sizes == [2, 1] and len(timed.seconds) == 2 and min(timed.seconds) >= 0.002


def test_patch_benchmark_warms_up_then_times_each_step():
    calls = []

    def predictor(batch):
        calls.append(batch.shape)
        return _sleepy(batch)

    rows = patch_benchmark(predictor, (4, 6, 8), 2, batch_sizes=(1, 3), warmup=2, steps=5)
    assert calls == [(1, 4, 6, 8, 2)] * 7 + [(3, 4, 6, 8, 2)] * 7
    assert [(r["batch_size"], r["resolution"], r["steps"]) for r in rows] == [(1, "4x6x8", 5), (3, "4x6x8", 5)]
    for row in rows:
        lat = row["latency_ms"]
        assert 2.0 <= lat["mean"] <= lat["p99"] and lat["p90"] <= lat["p95"] <= lat["p99"]
        # img/s = images per batch / mean latency
        assert row["throughput_img_s"] == pytest.approx(row["batch_size"] * 1000 / lat["mean"])


def test_runtime_benchmark_runs_the_runtimes_side_by_side_on_the_same_patches():
    seen = {"a": [], "b": []}

    def runtime(name, offset, delay):
        def predict(batch):
            seen[name].append(batch.copy())
            time.sleep(delay)
            return np.full(batch.shape[:-1] + (2,), 0.5 + offset, np.float32)
        return predict

    rows = runtime_benchmark({"a": runtime("a", 0.0, 0.03), "b": runtime("b", 0.25, 0.003)}, (4, 4, 4), 1,
                             batch_sizes=(1, 2), warmup=1, steps=3)
    assert [(r["runtime"], r["batch_size"]) for r in rows] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    for x, y in zip(seen["a"], seen["b"]):  # the same patches, call by call
        np.testing.assert_array_equal(x, y)
    assert [r["max_abs_diff"] for r in rows] == [0.0, 0.25, 0.0, 0.25]
    assert rows[0]["speedup"] == rows[2]["speedup"] == 1.0
    for ref, row in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert row["speedup"] == pytest.approx(row["throughput_img_s"] / ref["throughput_img_s"])
        # b sleeps 3 ms a call, a 30 ms: the direction of the ratio, with room for a loaded machine's
        # late wake-ups (a 1 ms against 4 ms version failed once under load).
        assert row["speedup"] > 1.5


def test_benchmark_on_a_tiny_model(preprocessed_demo, trained_results):
    plan = preprocessed_demo.plan
    predictor = ensemble_predictor(load_models([trained_results / "fold_0" / "model.keras"]))
    ids = [case.id for case in preprocessed_demo.dataset.training[:2]]
    settings = PredictSettings(overlap=0.5, batch_size=2)
    result = benchmark_predict(predictor, plan.patch_size, plan.num_channels,
                               preprocessed_inputs(preprocessed_demo.preprocessed, ids), settings,
                               batch_sizes=(1, 2), warmup=1, steps=3)
    json.dumps(result)  # what the rule writes
    assert [(r["batch_size"], r["resolution"]) for r in result["patches"]] == [(1, "16x16x16"), (2, "16x16x16")]
    whole = result["whole_case"]
    assert [c["case"] for c in whole["cases"]] == ids
    for case in whole["cases"]:
        shape = np.load(preprocessed_demo.preprocessed / f"{case['case']}.npy", mmap_mode="r").shape[:3]
        windows = math.prod(len(window_starts(max(s, p), p, 0.5)) for s, p in zip(shape, plan.patch_size))
        assert case["shape"] == list(shape) and case["windows"] == windows
        assert case["calls"] == math.ceil(windows / 2)
        assert case["whole_s"] >= case["forward_s"] > 0 and case["ratio"] >= 1 and case["restore_s"] > 0
    assert whole["ratio"] == pytest.approx(whole["whole_s"] / whole["forward_s"]) and whole["ratio"] >= 1
    assert whole["settings"]["overlap"] == 0.5
    assert result["environment"]["backend"] == "tensorflow"
    table = format_tables(result)
    assert "| 3 | 1 | 16x16x16 |" in table and "| 3 | 2 | 16x16x16 |" in table
    assert f"| {ids[0]} |" in table and f"{whole['ratio']:.3f}" in table


def test_the_rule_benchmarks_the_folds_validation_cases(preprocessed_demo, trained_results, tmp_path, capsys):
    ids = [case.id for case in preprocessed_demo.dataset.training]
    write_json(tmp_path / "splits.json", [{"train": ids[:1], "val": ids[1:]}, {"train": ids[1:], "val": ids[:1]}])
    model, out = trained_results / "fold_0" / "model.keras", tmp_path / "benchmarks" / "predict.json"
    summary = run_benchmark(model, tmp_path / "splits.json", 0, preprocessed_demo.preprocessed, out,
                            plans=trained_results / "plans.json", section={"overlap": 0.25, "batch_size": 3},
                            batch_sizes=(2,), warmup=1, steps=2, threads=1)
    result = json.loads(out.read_text())
    assert result["model"] == str(model) and result["fold"] == 0
    assert [c["case"] for c in result["whole_case"]["cases"]] == ids[1:]
    assert result["whole_case"]["settings"]["overlap"] == 0.25 and result["whole_case"]["settings"]["batch_size"] == 3
    assert [(r["batch_size"], r["steps"]) for r in result["patches"]] == [(2, 2)]
    tables = format_tables(result)
    runtimes = result["runtimes"]
    assert [(r["runtime"], r["batch_size"]) for r in runtimes["rows"]] == [(r, 2) for r in available_runtimes()]
    assert [e["runtime"] for e in runtimes["exports"]] == [r for r in available_runtimes() if r != "keras"]
    assert all(e["max_abs_diff"]["real"] < 1e-4 and e["max_abs_diff"]["random"] < 1e-4 for e in runtimes["exports"])
    assert all(r["max_abs_diff"] < 1e-4 and r["throughput_img_s"] > 0 for r in runtimes["rows"])
    assert set(runtimes["unavailable"]) == {"keras", "saved_model", "onnx"} - set(available_runtimes())
    assert result["environment"]["threads"] == 1 and "onednn" in result["environment"]
    assert "| saved_model | 2 | 16x16x16 |" in tables and "Throughput [patches/s]" in tables
    assert tables in capsys.readouterr().out  # into the job's log
    assert summary == f"benchmark_predict (fold 0, model {model}):\n{tables}\nwritten to {out}"
