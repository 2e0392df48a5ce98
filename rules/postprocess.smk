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
        # The models' regions (their model.json) decide what is scored (nnU-Net); evaluate.*
        # changes nothing here.
        models=[model_file(fold) for fold in CV_FOLDS],
        infos=expand(res("fold_{fold}", "model.json"), fold=CV_FOLDS),
    output:
        res("postprocessing.json"),
    params:
        folds=CV_FOLDS,
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
