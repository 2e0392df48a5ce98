# A checkpoint: with `configurations: auto` the configurations it plans decide the jobs.


checkpoint plan:
    input:
        res("fingerprint.json"),
    output:
        res("plans.json"),
    params:
        overrides=config["plan"],
    log:
        log_file("plan.log"),
    localrule: True
    script:
        "../workflow_scripts/plan.py"
