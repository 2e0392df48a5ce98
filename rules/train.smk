# One job per configuration and fold, and for fold `all` (every case, no validation). A
# configuration trains on the shards of its data (`shards_name`); the cascade's also hold the
# 3d_lowres segmentation of each case. `train.init_weights` is a param and its model file an
# input: a changed path or file retrains. Execution settings (`resume`, `distribution`, `xla`,
# `deterministic`: unet.config.EXECUTION_SETTINGS) are read from config, not params: switching one
# must not make Snakemake consider a finished fold out of date. The recipe is resolved into the
# keys it fills (unet.training.settings.resolved_recipe): `learning_rate: 0.003` under `ours`
# changes nothing, a new default of the recipe retrains.


rule train:
    input:
        shards=lambda wildcards: res(shards_name(wildcards.configuration)),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
        init_weights=init_weights,
    output:
        model=res("{configuration}", "fold_{fold}", "model.keras"),
        best=res("{configuration}", "fold_{fold}", "model_best.keras"),
        # What predicting needs besides the network (regions, plan checksum): unet.inference.model_info.
        info=res("{configuration}", "fold_{fold}", "model.json"),
        log=res("{configuration}", "fold_{fold}", "training_log.jsonl"),
        curves=report(
            res("{configuration}", "fold_{fold}", "training_curves.png"),
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{configuration} fold {fold}",
        ),
    wildcard_constraints:
        fold=rf"\d+|{ALL}",
    params:
        train=resolved_recipe(result_settings(config, "train")),
    log:
        log_file("train", "{configuration}", "fold_{fold}.log"),
    threads: workflow.cores
    resources:
        **train_resources(),
    benchmark:
        res("benchmarks", "train_{configuration}_fold_{fold}.tsv")
    script:
        "../workflow_scripts/train.py"
