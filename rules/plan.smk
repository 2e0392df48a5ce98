

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


# `configurations: auto` trains what plans.json holds, known once it is written: this checkpoint
# lists it (configurations.json). Only `auto` asks for it: a checkpoint in the DAG makes `--until`
# miss the jobs after it (snakemake/snakemake#2824), so `plan` itself is a plain rule.
checkpoint planned_configurations:
    input:
        res("plans.json"),
    output:
        res("configurations.json"),
    log:
        log_file("planned_configurations.log"),
    localrule: True
    script:
        "../workflow_scripts/planned_configurations.py"
