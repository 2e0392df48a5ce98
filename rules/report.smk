# `report`: per configuration, the summary across the cross-validation folds and the plots, from
# the fold tables; the worst-case mosaic also reads the raw images, the references and the
# predictions; summary.html also shows the Dice before and after each postprocessing step tried.


rule report:
    input:
        tables=expand(res("{{configuration}}", "evaluation", "fold_{fold}.csv"), fold=CV_FOLDS),
        predictions=expand(res("{{configuration}}", "predictions", "fold_{fold}"), fold=CV_FOLDS),
        ready=res("dataset.ok"),
        postprocessing=res("{configuration}", "postprocessing.json"),
    output:
        summary=report(res("{configuration}", "evaluation", "summary.json"), caption="../report/summary.rst",
                       category="Evaluation", subcategory="{configuration}"),
        table=report(res("{configuration}", "evaluation", "summary.html"), caption="../report/summary_table.rst",
                     category="Evaluation", subcategory="{configuration}"),
        plot=report(res("{configuration}", "evaluation", "dice.png"), caption="../report/dice.rst",
                    category="Evaluation", subcategory="{configuration}"),
        hd95=report(res("{configuration}", "evaluation", "hd95.png"), caption="../report/hd95.rst",
                    category="Evaluation", subcategory="{configuration}"),
        worst=report(res("{configuration}", "evaluation", "worst_cases.png"), caption="../report/worst_cases.rst",
                     category="Evaluation", subcategory="{configuration}"),
    params:
        folds=CV_FOLDS,
        empty=config["evaluate"].get("empty", "nan"),
        data_dir=str(DATA_DIR),
    log:
        log_file("report", "{configuration}.log"),
    localrule: True
    script:
        "../workflow_scripts/report.py"
