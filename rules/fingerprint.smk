

rule fingerprint:
    input:
        res("dataset.ok"),
    output:
        res("fingerprint.json"),
    params:
        data_dir=str(DATA_DIR),
    log:
        log_file("fingerprint.log"),
    threads: workflow.cores
    benchmark:
        res("benchmarks", "fingerprint.tsv")
    script:
        "../workflow_scripts/fingerprint.py"
