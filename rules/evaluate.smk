

rule evaluate:
    input:
        predictions=res("predictions", "fold_{fold}"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        res("evaluation", "fold_{fold}.csv"),
    params:
        regions=config["evaluate"].get("regions", {}),
        data_dir=str(DATA_DIR),
    log:
        log_file("evaluate", "fold_{fold}.log"),
    script:
        "../workflow_scripts/evaluate.py"
