# `benchmark_*` rules measure speed; the default target does not run them. Run one by name:
#   snakemake --cores all benchmark_predict
# The benchmark runs on the first cross-validation fold of `folds` (its model and validation
# cases), fold 0 when `folds` lists only `all`, of 3d_fullres, or of the first configuration listed
# when `configurations` does not hold 3d_fullres.
BENCHMARK_FOLD = CV_FOLDS[0] if CV_FOLDS else 0
_listed = config.get("configurations", "auto")
BENCHMARK_CONFIGURATION = FULLRES if _listed == "auto" or FULLRES in _listed else _listed[0]
# The references (nnU-Net v2; Keras on JAX) run from virtualenvs of their own under the
# workflow's .bench/, pinned by its envs/{name}-bench.txt and built by `make bench-env`;
# `benchmark_env` runs that make target for the one a benchmark needs, on first use; a
# benchmark's input is the stamp `make bench-env` writes last into the virtualenv.
import sys

BENCH_VENV = str(Path(workflow.basedir) / ".bench" / "{name}-venv" / ".installed")


rule benchmark_env:
    input:
        str(Path(workflow.basedir) / "envs" / "{name}-bench.txt"),
    output:
        BENCH_VENV,
    params:
        repo=workflow.basedir,  # where the Makefile is
        python=sys.executable,  # the new virtualenv gets this Python's version
    log:
        log_file("benchmark", "{name}-env.log"),
    wildcard_constraints:
        name="nnunet|jax",
    localrule: True
    shell:
        "make -C {params.repo:q} PYTHON={params.python:q} .bench/{wildcards.name}-venv/.installed > {log:q} 2>&1"


# The fold's network that predicts (predict.checkpoint: model.keras, or model_best.keras), also
# exported to each runtime installed (Keras, SavedModel, and ONNX with the extra of `make
# onnx-env`) and measured on the same patches; the exports go to a temporary folder.
rule benchmark_predict:
    input:
        model=model_file(BENCHMARK_FOLD, BENCHMARK_CONFIGURATION),
        splits=res("splits.json"),
        plans=res("plans.json"),
        preprocessed=lambda wildcards: preprocessed_files(preprocessed_name(BENCHMARK_CONFIGURATION))["images"],
    output:
        res("benchmarks", "predict.json"),
    params:
        predict={k: v for k, v in config["predict"].items() if k != "save_probabilities"},
        fold=BENCHMARK_FOLD,
        preprocessed_dir=res(preprocessed_name(BENCHMARK_CONFIGURATION)),
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
# needs no input but nnU-Net's own virtualenv (.bench/nnunet-venv, made on first use). Ours runs
# twice: in one process, and as users run it (this workflow through Snakemake, `--until
# preprocess`, in a scratch folder: one job per case, each a fresh Python process).
rule benchmark_preprocess:
    input:
        nnunet_venv=BENCH_VENV.format(name="nnunet"),
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
# (not the task's own data), so it needs no input but nnU-Net's own virtualenv.
rule benchmark_loader:
    input:
        nnunet_venv=BENCH_VENV.format(name="nnunet"),
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
        jax_venv=BENCH_VENV.format(name="jax"),
    output:
        res("benchmarks", "train.json"),
    params:
        fold=BENCHMARK_FOLD,
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


# Accuracy: our workflow (run through this Snakefile in a work folder of its own, on a generated
# dataset made to be hard: thick slices, a thin vessel, small lesions, two channels) against
# nnU-Net v2 with the same network sizes, split and number of training steps, both scored by our
# evaluation on the raw grid (per-label Dice side by side, time in training steps).
rule benchmark_accuracy:
    input:
        nnunet_venv=BENCH_VENV.format(name="nnunet"),
    output:
        res("benchmarks", "accuracy.json"),
    params:
        cases=20,
        epochs=10,
        steps_per_epoch=50,
        plan={"patch_size": [64, 64, 16], "batch_size": 2, "filters": 16},
        # [3d_fullres, 2d]: the 2d network too, on both sides (docs/benchmarks.md), sized by plan_2d.
        configurations=["3d_fullres"],
        plan_2d={"patch_size": [96, 96], "batch_size": 14, "filters": 16},
        tta=False,  # mirroring at prediction, both sides
        seed=0,
        snakefile=workflow.main_snakefile,
        work_dir=res("benchmarks", "accuracy"),  # kept: both sides' predictions and logs
    log:
        log_file("benchmark", "accuracy.log"),
    threads: workflow.cores
    script:
        "../workflow_scripts/benchmark_accuracy.py"


# Recipe ablation: our workflow alone on the accuracy benchmark's hard dataset, fold 0 trained with
# the defaults and with each training/prediction switch flipped (nnU-Net's or NVIDIA's choice), for
# each seed; per-label Dice against the defaults. Runs share a work folder: Snakemake reruns only
# what a switch changes.
rule benchmark_ablation:
    output:
        res("benchmarks", "ablation.json"),
    params:
        cases=20,
        epochs=10,
        steps_per_epoch=50,
        plan={"patch_size": [64, 64, 16], "batch_size": 2, "filters": 16},
        seeds=[0, 1],
        snakefile=workflow.main_snakefile,
        work_dir=res("benchmarks", "ablation"),
    log:
        log_file("benchmark", "ablation.log"),
    threads: workflow.cores
    script:
        "../workflow_scripts/benchmark_ablation.py"
