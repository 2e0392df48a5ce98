# The raw dataset: generated (demo), downloaded (MSD task) or a user's folder, checked either way.
# A checkpoint: the case list that later rules expand over is known only once it has run.


checkpoint download:
    output:
        res("dataset.ok"),
    params:
        task=TASK,
        data_dir=str(DATA_DIR),
        demo=config.get("demo", {}) if TASK == "demo" else None,
    log:
        log_file("download.log"),
    localrule: True
    script:
        "../workflow_scripts/download.py"
