

rule shard:
    input:
        unpack(preprocessed_files),
    output:
        shards=directory(res("shards")),
        splits=res("splits.json"),
    params:
        case_ids=training_case_ids,
        nfolds=config["nfolds"],
        split_seed=config["split_seed"],
    log:
        log_file("shard.log"),
    script:
        "../workflow_scripts/shard.py"
