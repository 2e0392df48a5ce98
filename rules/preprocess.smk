# One job per training case, so caching, cluster grouping and failures are per case.


rule preprocess:
    input:
        ready=res("dataset.ok"),
        plans=res("plans.json"),
    output:
        image=res("preprocessed", "{case}.npy"),
        seg=res("preprocessed", "{case}_seg.npy"),
        fg=res("preprocessed", "{case}_fg.npy"),
        geometry=res("preprocessed", "{case}.json"),
    params:
        data_dir=str(DATA_DIR),
    log:
        log_file("preprocess", "{case}.log"),
    benchmark:
        res("benchmarks", "preprocess", "{case}.tsv")
    threads: 1
    group:
        "preprocess"  # on a cluster, cases share SLURM jobs (group-components in profiles/slurm)
    script:
        "../workflow_scripts/preprocess.py"
