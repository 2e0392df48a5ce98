# The raw dataset: generated (demo), downloaded (MSD task), converted from a challenge folder
# (config `ingest`) or a user's folder, checked either way.
# A checkpoint: the case list that later rules expand over is known only once it has run.


checkpoint download:
    output:
        res("dataset.ok"),
    params:
        task=TASK,
        data_dir=str(DATA_DIR),
        demo=config.get("demo", {}) if TASK == "demo" else None,
        ingest=config.get("ingest"),
    log:
        log_file("download.log"),
    threads: 4  # converting an ingest runs one process per thread
    localrule: True
    script:
        "../workflow_scripts/download.py"
