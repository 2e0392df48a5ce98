# `predict`: the validation cases of one fold of a configuration (not `all`: it has none);
# `ensemble`: the test images, averaged over every trained model of a configuration (`all`
# included). The cascade also takes 3d_lowres' segmentation of each case: its cross-validation
# predictions (`3d_cascade_fullres/previous/`) for the validation cases, its test-set predictions
# for the test set.
# `ensemble_pair`: a pair of configurations, their saved probabilities averaged (the candidates of
# the selection, unet.evaluation.selection), for the cross-validation folds and the test set.
# Each writes {case}.nii.gz (or the dataset's file_ending), and {case}.npz (probabilities) with
# predict.save_probabilities or when configurations are selected; each predicts with
# predict.checkpoint's network of each fold (`model_file`) and the regions its model.json records.
# `predict.batch_size` changes no result: it is read from config, not params.


def predict_inputs(wildcards):
    inputs = {"preprocessed": preprocessed_files(preprocessed_name(wildcards.configuration))["images"]}
    if wildcards.configuration == CASCADE:
        inputs["previous"] = res(CASCADE, "previous")
    return inputs


rule predict:
    input:
        unpack(predict_inputs),
        model=model_file(),
        info=res("{configuration}", "fold_{fold}", "model.json"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        directory(res("{configuration}", "predictions", "fold_{fold}")),
    params:
        predict=predict_params,
        preprocessed_dir=lambda wildcards: res(preprocessed_name(wildcards.configuration)),
    log:
        log_file("predict", "{configuration}", "fold_{fold}.log"),
    threads: workflow.cores
    resources:
        gpu=min(config["train"]["gpus"], 1),
    benchmark:
        res("benchmarks", "predict_{configuration}_fold_{fold}.tsv")
    script:
        "../workflow_scripts/predict.py"


rule ensemble:
    input:
        models=[model_file(fold) for fold in FOLDS],
        infos=expand(res("{{configuration}}", "fold_{fold}", "model.json"), fold=FOLDS),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
        previous=lambda wildcards: [res(LOWRES, "predictions", "test")] if wildcards.configuration == CASCADE else [],
    output:
        directory(res("{configuration}", "predictions", "test")),
    params:
        predict=predict_params,
        data_dir=str(DATA_DIR),
    log:
        log_file("predict", "{configuration}", "test.log"),
    threads: workflow.cores
    resources:
        gpu=min(config["train"]["gpus"], 1),
    script:
        "../workflow_scripts/ensemble.py"


rule ensemble_pair:
    input:
        first=res("{first}", "predictions", "{split}"),
        second=res("{second}", "predictions", "{split}"),
        ready=res("dataset.ok"),
    output:
        directory(res("ensembles", "{first}+{second}", "predictions", "{split}")),
    wildcard_constraints:
        first="|".join(CONFIGURATIONS),
        second="|".join(CONFIGURATIONS),
        split=r"fold_\d+|test",
    log:
        log_file("predict", "ensembles", "{first}+{second}", "{split}.log"),
    script:
        "../workflow_scripts/ensemble_pair.py"
