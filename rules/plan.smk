

rule plan:
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
