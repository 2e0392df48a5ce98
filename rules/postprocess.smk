# `postprocessing`: which "keep only the largest connected component" steps raise the Dice of the
# cross-validation predictions of every fold (nnU-Net v2's rule; not fold `all`, which has none)
# -> postprocessing.json, for each configuration and each pair ensemble (`candidate_dir`).
# `select_configuration`: the configuration, or pair ensemble, with the best cross-validation Dice
# (nnU-Net's find_best_configuration) -> best_configuration.json, and its table in the report. A
# checkpoint: the test set's predictions are the winner's.
# `postprocess_test`: the winner's postprocessing applied to its test-set predictions. A step of its
# own, not part of `ensemble`: a new postprocessing.json then reruns this quick step only, never
# the networks, and `ensemble` need not wait for every fold's cross-validation predictions.


def members(candidate):
    """The configurations of a candidate's name (`3d_fullres`, `ensembles/2d+3d_fullres`)."""
    return candidate.removeprefix("ensembles/").split("+")


rule postprocessing:
    input:
        predictions=expand(res("{{candidate}}", "predictions", "fold_{fold}"), fold=CV_FOLDS),
        splits=res("splits.json"),
        plans=res("plans.json"),
        # The models' regions (their model.json) decide what is scored (nnU-Net); evaluate.*
        # changes nothing here. A pair's members were trained with the same ones.
        models=lambda wildcards: [model_file(fold, members(wildcards.candidate)[0]) for fold in CV_FOLDS],
        infos=lambda wildcards: [res(members(wildcards.candidate)[0], f"fold_{fold}", "model.json")
                                 for fold in CV_FOLDS],
    output:
        res("{candidate}", "postprocessing.json"),
    wildcard_constraints:
        candidate=rf"({'|'.join(CONFIGURATIONS)})|ensembles/[^/]+\+[^/]+",
    params:
        folds=CV_FOLDS,
        data_dir=str(DATA_DIR),
    log:
        log_file("postprocessing", "{candidate}.log"),
    benchmark:
        res("benchmarks", "postprocessing", "{candidate}.tsv")
    script:
        "../workflow_scripts/postprocessing.py"


checkpoint select_configuration:
    input:
        predictions=lambda wildcards: [res(c, "predictions", f"fold_{fold}") for c in configurations()
                                       for fold in CV_FOLDS],
        # One configuration is scored from its label maps, with the regions of its models.
        info=lambda wildcards: [res(configurations()[0], f"fold_{CV_FOLDS[0]}", "model.json")]
        if len(configurations()) == 1 else [],
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        best=res("best_configuration.json"),
        table=report(res("configurations.html"), caption="../report/configurations.rst",
                     category="Evaluation"),
    params:
        # {configuration: its folds' folders of predictions}
        predictions=lambda wildcards: {c: [res(c, "predictions", f"fold_{fold}") for fold in CV_FOLDS]
                                       for c in configurations()},
        folds=CV_FOLDS,
        data_dir=str(DATA_DIR),
    log:
        log_file("select_configuration.log"),
    localrule: True
    script:
        "../workflow_scripts/select_configuration.py"


rule postprocess_test:
    input:
        predictions=lambda wildcards: str(Path(candidate_dir(selected())) / "predictions" / "test"),
        postprocessing=lambda wildcards: str(Path(candidate_dir(selected())) / "postprocessing.json"),
    output:
        directory(res("predictions", "test_postprocessed")),
    log:
        log_file("predict", "test_postprocessed.log"),
    script:
        "../workflow_scripts/postprocess_test.py"
