# `split`: the k-fold splits of the training cases (splits.json), shared by every configuration.
# `shard`: TFRecord shards of a configuration's preprocessed cases (`shards_name`): `shards` of
# `preprocessed` (3d_fullres, 2d), `shards_3d_lowres`, and `shards_3d_cascade_fullres`, which
# also hold each case's 3d_lowres segmentation as one-hot channels.


rule split:
    input:
        ready=res("dataset.ok"),
    output:
        res("splits.json"),
    params:
        case_ids=training_case_ids,
        nfolds=config["nfolds"],
        split_seed=config["split_seed"],
    log:
        log_file("split.log"),
    localrule: True
    script:
        "../workflow_scripts/split.py"


def shard_inputs(wildcards):
    configuration = data_configuration(wildcards.shards, shards_name)
    inputs = preprocessed_files(preprocessed_name(configuration))
    if configuration == CASCADE:
        inputs["previous"] = res(CASCADE, "previous")
    return inputs


rule shard:
    input:
        unpack(shard_inputs),
        plans=res("plans.json"),
    output:
        shards=directory(res("{shards}")),
    wildcard_constraints:
        shards=data_names(shards_name),
    params:
        case_ids=training_case_ids,
    log:
        log_file("shard", "{shards}.log"),
    script:
        "../workflow_scripts/shard.py"
