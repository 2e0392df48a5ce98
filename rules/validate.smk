# `validate`: generates the demo or converts a BraTS folder (config `ingest`) when needed, then
# reads every file the dataset lists once and checks it (unet.io.validation). A scheduled job on
# a cluster: reading a 30 GB task and converting BraTS are work for a compute node.


rule validate:
    input:
        res("download.json"),
    output:
        res("dataset.ok"),
    params:
        task=TASK,
        data_dir=str(DATA_DIR),
        demo=config.get("demo", {}) if TASK == "demo" else None,
        ingest=config.get("ingest"),
    log:
        log_file("validate.log"),
    threads: 4  # files are read, and an ingest converted, by one process per thread
    script:
        "../workflow_scripts/validate.py"
