# `report`: the summary across the cross-validation folds and the plots, from the fold tables; the
# worst-case mosaic also reads the raw images, the references and the predictions; summary.html
# also shows the Dice before and after each postprocessing step tried.


rule report:
    input:
        tables=expand(res("evaluation", "fold_{fold}.csv"), fold=CV_FOLDS),
        predictions=expand(res("predictions", "fold_{fold}"), fold=CV_FOLDS),
        ready=res("dataset.ok"),
        postprocessing=res("postprocessing.json"),
    output:
        summary=report(res("evaluation", "summary.json"), caption="../report/summary.rst",
                       category="Evaluation"),
        table=report(res("evaluation", "summary.html"), caption="../report/summary_table.rst",
                     category="Evaluation"),
        plot=report(res("evaluation", "dice.png"), caption="../report/dice.rst",
                    category="Evaluation"),
        hd95=report(res("evaluation", "hd95.png"), caption="../report/hd95.rst",
                    category="Evaluation"),
        worst=report(res("evaluation", "worst_cases.png"), caption="../report/worst_cases.rst",
                     category="Evaluation"),
    params:
        folds=CV_FOLDS,
        empty=config["evaluate"].get("empty", "nan"),
        data_dir=str(DATA_DIR),
    log:
        log_file("report.log"),
    localrule: True
    script:
        "../workflow_scripts/report.py"
