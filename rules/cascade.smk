# `cascade_previous`: 3d_lowres' segmentation of every training case, brought onto the full
# resolution preprocessed grid, the extra input of 3d_cascade_fullres (one-hot channels in its
# shards; the validation cases' too). As nnU-Net, from 3d_lowres' cross-validation: each case as
# predicted by the fold that did not train on it, so all folds must run.


rule cascade_previous:
    input:
        predictions=expand(res(LOWRES, "predictions", "fold_{fold}"), fold=CV_FOLDS),
        geometry=lambda wildcards: preprocessed_files(preprocessed_name(CASCADE))["geometry"],
        plans=res("plans.json"),
    output:
        directory(res(CASCADE, "previous")),
    params:
        case_ids=training_case_ids,
    log:
        log_file("cascade_previous.log"),
    script:
        "../workflow_scripts/cascade_previous.py"


def _check_cascade_folds():
    listed = config.get("configurations", "auto")
    if CASCADE in listed and sorted(CV_FOLDS) != list(range(config["nfolds"])):
        raise WorkflowError(
            f"config configurations: {CASCADE} trains on 3d_lowres' cross-validation predictions of every "
            f"training case, so `folds` must hold all of 0..{config['nfolds'] - 1} (has {FOLDS})")


_check_cascade_folds()
