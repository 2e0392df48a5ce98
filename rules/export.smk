# `export_configuration`: a configuration's trained folds as one model archive
# ({results}/{task}/{configuration}/model.zip) that `python -m unet predict -m` runs with no other
# file (docs/export.md). `export`: the selected configuration's archive (`snakemake export`). Not
# part of `all`: it costs no training, but copies every fold's network. It takes
# predict.checkpoint's network of each fold; the config is stored in the archive but read from
# config, not params, so that editing an unrelated key does not rewrite the archive.


rule export_configuration:
    input:
        plans=res("plans.json"),
        models=[model_file(fold) for fold in FOLDS],
        infos=expand(res("{{configuration}}", "fold_{fold}", "model.json"), fold=FOLDS),
        # The run's postprocessing travels with its models (chosen on the CV folds' predictions;
        # fold `all` alone has none).
        postprocessing=[res("{configuration}", "postprocessing.json")] if CV_FOLDS else [],
    output:
        res("{configuration}", "model.zip"),
    params:
        checkpoint=config["predict"].get("checkpoint", "final"),
        folds=FOLDS,
        results=res(),
    log:
        log_file("export", "{configuration}.log"),
    script:
        "../workflow_scripts/export.py"


def export_target(wildcards):
    chosen = selected() if CV_FOLDS else configurations()[0]
    if "+" in chosen:
        raise WorkflowError(f"{res('best_configuration.json')}: the selected candidate is the pair ensemble "
                            f"{chosen}, and a model archive holds one configuration; export one of them: "
                            + " or ".join(f"snakemake {res(c, 'model.zip')}" for c in chosen.split("+")))
    return res(chosen, "model.zip")


rule export:
    input:
        export_target,
    localrule: True
