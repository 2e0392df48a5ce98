# One job per fold. `train.resume` is read from config, not params: resuming an interrupted
# run must not make Snakemake consider a finished fold out of date.


rule train:
    input:
        shards=res("shards"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        model=res("fold_{fold}", "model.keras"),
        log=res("fold_{fold}", "training_log.jsonl"),
        curves=report(
            res("fold_{fold}", "training_curves.png"),
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="fold {fold}",
        ),
    params:
        train={k: v for k, v in config["train"].items() if k != "resume"},
    log:
        log_file("train", "fold_{fold}.log"),
    threads: workflow.cores
    resources:
        **train_resources(),
    benchmark:
        res("benchmarks", "train_fold_{fold}.tsv")
    script:
        "../workflow_scripts/train.py"
