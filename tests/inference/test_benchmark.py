import json
import math
import time

import numpy as np
import pytest

from unet.inference.benchmark import TimedPredictor, benchmark_predict, format_tables, patch_benchmark, \
    run_benchmark
from unet.inference.predict import PredictSettings, ensemble_predictor, load_models, preprocessed_inputs
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
    assert tables in capsys.readouterr().out  # into the job's log
    assert summary == f"benchmark_predict (fold 0, model {model}):\n{tables}\nwritten to {out}"
