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


# Our training input pipeline (augmented 128^3 patches/s, per core) against nnU-Net v2's
# nnUNetDataLoader with its training transforms, each with `threads` cores, on generated cases
# (not the task's own data), so it needs no input; nnU-Net runs in its own virtualenv.
rule benchmark_loader:
    output:
        res("benchmarks", "loader.json"),
    params:
        cases=8,
        case_shape=[160, 180, 150],
        patch_size=[128, 128, 128],
        seconds=60,
    log:
        log_file("benchmark", "loader.log"),
    threads: workflow.cores
    script:
        "../workflow_scripts/benchmark_loader.py"


# Training steps of the planned network (one GPU, or the CPU): the training loop's own step and
# compile + train_on_batch, AMP and XLA on/off, then the same under KERAS_BACKEND=jax (in its
# own virtualenv, .bench/jax-venv, made on first use). `patch_size: null` is the plan's patch.
rule benchmark_train:
    input:
        plans=res("plans.json"),
    output:
        res("benchmarks", "train.json"),
    params:
        fold=FOLDS[0],
        patch_size=None,
        batch_size=2,
        amp=[False, True],
        xla=[False, True],
        jax=True,
        warmup=5,
        steps=20,
    log:
        log_file("benchmark", "train.log"),
    threads: workflow.cores
    resources:
        gpu=min(1, config["train"]["gpus"]),
    script:
        "../workflow_scripts/benchmark_train.py"
