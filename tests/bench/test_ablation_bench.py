"""The recipe ablation's pieces that need no training: each variant's config, the summary over
seeds against the defaults, and the table."""

import pytest

from unet.bench.ablation import VARIANTS, format_table, main, summarize, variant_config


def test_each_variant_flips_one_switch_over_the_benchmarks_config(tmp_path):
    plan = {"patch_size": [64, 64, 16], "batch_size": 2, "filters": 16}
    base = variant_config(tmp_path, "Bench", VARIANTS["defaults"], 3, 10, 50, plan)
    assert base["train"] == {"seed": 3, "epochs": 10, "steps_per_epoch": 50} and base["predict"] == {"tta": False}
    assert base["folds"] == [0] and base["plan"] == plan
    for name, variant in VARIANTS.items():
        config = variant_config(tmp_path, "Bench", variant, 3, 10, 50, plan)
        changed = {(section, key) for section in ("train", "predict") for key, value in config[section].items()
                   if base[section].get(key) != value}
        assert len(changed) == (0 if name == "defaults" else 1), (name, changed)
        if changed:
            (section, key), = changed
            assert name.startswith(f"{section}.{key}:"), name  # the name says which switch


def test_a_variant_may_change_only_training_and_prediction(tmp_path):
    with pytest.raises(ValueError, match="plan"):
        variant_config(tmp_path, "Bench", {"plan": {"filters": 32}}, 0, 1, 1, {})


def _run(variant, seed, organ, vessel, epoch_s=10.0):
    return {"variant": variant, "seed": seed, "dice": {"organ": organ, "vessel": vessel}, "wall_s": 100.0,
            "median_epoch_s": epoch_s, "load_average": [1.0, 1.0, 1.0]}


def test_the_summary_pairs_each_seed_with_the_defaults_run_of_that_seed():
    runs = [_run("defaults", 0, 0.90, 0.80), _run("defaults", 1, 0.92, 0.70),
            _run("train.recipe: nnunet", 0, 0.91, 0.85), _run("train.recipe: nnunet", 1, 0.90, None, 12.0)]
    summary = summarize(runs)
    organ = summary["train.recipe: nnunet"]["labels"]["organ"]
    assert organ["per_seed"] == [0.91, 0.90] and organ["mean"] == pytest.approx(0.905)
    assert organ["vs_defaults"] == pytest.approx(((0.91 - 0.90) + (0.90 - 0.92)) / 2)
    vessel = summary["train.recipe: nnunet"]["labels"]["vessel"]
    assert vessel["mean"] == pytest.approx(0.85) and vessel["vs_defaults"] == pytest.approx(0.05)  # seed 1: absent
    assert summary["defaults"]["labels"]["vessel"]["vs_defaults"] == 0
    assert summary["train.recipe: nnunet"]["median_epoch_s"] == pytest.approx(11.0)


def test_the_table_has_a_row_per_variant_with_the_difference_to_the_defaults():
    runs = [_run("defaults", 0, 0.90, 0.80), _run("predict.tta: true", 0, 0.93, 0.78)]
    report = {"summary": summarize(runs), "n_cases": 20, "epochs": 10, "steps_per_epoch": 50, "seeds": [0],
              "cores": 2, "date": "2026-11-30 20:00 UTC",
              "machine": {"cpu": "Test CPU", "onednn": True}}
    lines = format_table(report).splitlines()
    assert lines[2] == "| variant | organ | vessel | median epoch (s) |"
    assert lines[4] == "| defaults | 0.900 | 0.800 | 10.0 |"
    assert lines[5] == "| predict.tta: true | 0.930 +0.030 | 0.780 -0.020 | 10.0 |"


def test_an_unknown_variant_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        main(["--snakefile", "Snakefile", "--variants", "train.recipe: sgd"])
    assert "invalid choice" in capsys.readouterr().err
