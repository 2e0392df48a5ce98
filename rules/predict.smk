# `predict`: the validation cases of one fold (not `all`: it has none); `ensemble`: the test images,
# averaged over every trained model (`all` included).
# Both write {case}.nii.gz (or the dataset's file_ending), and {case}.npz (probabilities) with
# predict.save_probabilities; both predict with predict.checkpoint's network of each fold
# (`model_file`) and the regions its model.json records.
# `predict.batch_size` changes no result: it is read from config, not params.
from unet.config import result_settings


rule predict:
    input:
        model=model_file(),
        info=res("fold_{fold}", "model.json"),
        splits=res("splits.json"),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
        preprocessed=lambda wildcards: preprocessed_files(wildcards)["images"],
    output:
        directory(res("predictions", "fold_{fold}")),
    params:
        predict=result_settings(config, "predict"),
        preprocessed_dir=res("preprocessed"),
    log:
        log_file("predict", "fold_{fold}.log"),
    threads: workflow.cores
    resources:
        gpu=min(config["train"]["gpus"], 1),
    benchmark:
        res("benchmarks", "predict_fold_{fold}.tsv")
    script:
        "../workflow_scripts/predict.py"


rule ensemble:
    input:
        models=[model_file(fold) for fold in FOLDS],
        infos=expand(res("fold_{fold}", "model.json"), fold=FOLDS),
        plans=res("plans.json"),
        ready=res("dataset.ok"),
    output:
        directory(res("predictions", "test")),
    params:
        predict=result_settings(config, "predict"),
        data_dir=str(DATA_DIR),
    log:
        log_file("predict", "test.log"),
    threads: workflow.cores
    resources:
        gpu=min(config["train"]["gpus"], 1),
    script:
        "../workflow_scripts/ensemble.py"
