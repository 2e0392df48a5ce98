# `export`: the trained folds as one model archive ({results}/{task}/model.zip) that
# `python -m unet predict -m` runs with no other file (docs/export.md). Not part of `all`: it
# costs no training, but copies every fold's network; ask for it with `snakemake export`. It takes
# predict.checkpoint's network of each fold; the config is stored in the archive but read from
# config, not params, so that editing an unrelated key does not rewrite the archive.


rule export:
    input:
        plans=res("plans.json"),
        models=[model_file(fold) for fold in FOLDS],
        infos=expand(res("fold_{fold}", "model.json"), fold=FOLDS),
        # The run's postprocessing travels with its models (chosen on the CV folds' predictions;
        # fold `all` alone has none).
        postprocessing=[res("postprocessing.json")] if CV_FOLDS else [],
    output:
        res("model.zip"),
    params:
        checkpoint=config["predict"].get("checkpoint", "final"),
        folds=FOLDS,
        results=res(),
    log:
        log_file("export.log"),
    script:
        "../workflow_scripts/export.py"
