# `benchmark_*` rules measure speed; the default target does not run them. Run one by name:
#   snakemake --cores all benchmark_predict
# The benchmark runs on the first fold of `folds` (its model and validation cases).


rule benchmark_predict:
    input:
        model=res(f"fold_{FOLDS[0]}", "model.keras"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        preprocessed=lambda wildcards: preprocessed_files(wildcards)["images"],
    output:
        res("benchmarks", "predict.json"),
    params:
        predict={k: v for k, v in config["predict"].items() if k != "save_probabilities"},
        fold=FOLDS[0],
        preprocessed_dir=res("preprocessed"),
        batch_sizes=[1, 2],
        warmup=20,
        steps=100,
    log:
        log_file("benchmark", "predict.log"),
    threads: workflow.cores
    script:
        "../workflow_scripts/benchmark_predict.py"


# Our validate + fingerprint + plan + preprocess against nnU-Net v2's plan_and_preprocess, each
# with `threads` processes, on a generated BraTS-like dataset (not the task's own data), so it
# needs no input; nnU-Net comes from its own virtualenv (.bench/nnunet-venv, made on first use).
rule benchmark_preprocess:
    output:
        res("benchmarks", "preprocess.json"),
    params:
        cases=8,
        seed=0,
    log:
        log_file("benchmark", "preprocess.log"),
    threads: workflow.cores
    script:
        "../workflow_scripts/benchmark_preprocess.py"

