# `evaluate`: one job per configuration and fold, the fold's validation predictions against labelsTr.
# `evaluate.regions: null` scores the regions that dataset.json declares (read at run time;
# dataset.ok changes whenever the dataset does, so a changed dataset.json reruns this rule).


rule evaluate:
    input:
        predictions=res("{configuration}", "predictions", "fold_{fold}"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        res("{configuration}", "evaluation", "fold_{fold}.csv"),
    params:
        regions=config["evaluate"].get("regions"),
        empty=config["evaluate"].get("empty", "nan"),
        data_dir=str(DATA_DIR),
    log:
        log_file("evaluate", "{configuration}", "fold_{fold}.log"),
    benchmark:
        res("benchmarks", "evaluate_{configuration}_fold_{fold}.tsv")
    script:
        "../workflow_scripts/evaluate.py"
