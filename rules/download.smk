# `download` only downloads: an MSD task's tar, fetched (resumably) and extracted into
# {data_dir}/{task}, or nothing when it is there already. It is a local rule: on a cluster it runs
# on the login node, as compute nodes often have no internet. For the demo, an ingest or a user's
# own folder there is nothing to download (it checks that a user's folder has a dataset.json);
# `validate` (rules/validate.smk) does the heavy work in a scheduled job.


rule download:
    output:
        res("download.json"),
    params:
        task=TASK,
        data_dir=str(DATA_DIR),
        ingest=config.get("ingest"),
    log:
        log_file("download.log"),
    localrule: True
    script:
        "../workflow_scripts/download.py"


# Only in the DAG of an MSD task not yet on disk (see `case_ids` in rules/common.smk): the rules
# that expand over the cases wait for this checkpoint, which lists them once `download` has run.
checkpoint case_list:
    input:
        res("download.json"),
    output:
        res("cases.json"),
    params:
        data_dir=str(DATA_DIR),
    log:
        log_file("case_list.log"),
    localrule: True
    script:
        "../workflow_scripts/case_list.py"
