# One job per training case and data folder (`preprocessed`: the 3d_fullres spacing, shared by 2d
# and the cascade; `preprocessed_3d_lowres`), so caching, cluster grouping and failures are per case.


rule preprocess:
    input:
        ready=res("dataset.ok"),
        plans=res("plans.json"),
    output:
        image=res("{preprocessed}", "{case}.npy"),
        seg=res("{preprocessed}", "{case}_seg.npy"),
        fg=res("{preprocessed}", "{case}_fg.npy"),
        geometry=res("{preprocessed}", "{case}.json"),
    wildcard_constraints:
        preprocessed=data_names(preprocessed_name),
    params:
        data_dir=str(DATA_DIR),
        configuration=lambda wildcards: data_configuration(wildcards.preprocessed, preprocessed_name),
    log:
        log_file("preprocess", "{preprocessed}", "{case}.log"),
    benchmark:
        res("benchmarks", "preprocess", "{preprocessed}", "{case}.tsv")
    threads: 1
    group:
        "preprocess"  # on a cluster, cases share SLURM jobs (group-components in profiles/slurm)
    script:
        "../workflow_scripts/preprocess.py"
