# `postprocessing`: which "keep only the largest connected component" steps raise the Dice of the
# cross-validation predictions of every fold (nnU-Net v2's rule; not fold `all`, which has none)
# -> postprocessing.json.
# `postprocess_test`: those steps applied to the test-set predictions of `ensemble`. A step of its
# own, not part of `ensemble`: a new postprocessing.json then reruns this quick step only, never
# the networks, and `ensemble` need not wait for every fold's cross-validation predictions.


rule postprocessing:
    input:
        predictions=expand(res("predictions", "fold_{fold}"), fold=CV_FOLDS),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        res("postprocessing.json"),
    params:
        folds=CV_FOLDS,
        # The model's regions decide what is scored (nnU-Net); evaluate.* changes nothing here.
        regions=config["train"].get("regions"),
        data_dir=str(DATA_DIR),
    log:
        log_file("postprocessing.log"),
    benchmark:
        res("benchmarks", "postprocessing.tsv")
    script:
        "../workflow_scripts/postprocessing.py"


rule postprocess_test:
    input:
        predictions=res("predictions", "test"),
        postprocessing=res("postprocessing.json"),
    output:
        directory(res("predictions", "test_postprocessed")),
    log:
        log_file("predict", "test_postprocessed.log"),
    script:
        "../workflow_scripts/postprocess_test.py"
