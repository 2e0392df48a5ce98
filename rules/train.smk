# One job per fold, and for fold `all` (every case, no validation). `train.init_weights` is a
# param and its model file an input: a changed path or file retrains. Execution settings
# (`resume`, `distribution`, `xla`, `deterministic`: unet.config.EXECUTION_SETTINGS) are read from
# config, not params: switching one must not make Snakemake consider a finished fold out of date.
from unet.config import result_settings


rule train:
    input:
        shards=res("shards"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
        init_weights=init_weights,
    output:
        model=res("fold_{fold}", "model.keras"),
        best=res("fold_{fold}", "model_best.keras"),
        # What predicting needs besides the network (regions, plan checksum): unet.inference.model_info.
        info=res("fold_{fold}", "model.json"),
        log=res("fold_{fold}", "training_log.jsonl"),
        curves=report(
            res("fold_{fold}", "training_curves.png"),
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="fold {fold}",
        ),
    wildcard_constraints:
        fold=rf"\d+|{ALL}",
    params:
        train=result_settings(config, "train"),
    log:
        log_file("train", "fold_{fold}.log"),
    threads: workflow.cores
    resources:
        **train_resources(),
    benchmark:
        res("benchmarks", "train_fold_{fold}.tsv")
    script:
        "../workflow_scripts/train.py"
