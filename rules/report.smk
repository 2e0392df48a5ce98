

rule report:
    input:
        expand(res("evaluation", "fold_{fold}.csv"), fold=FOLDS),
    output:
        summary=report(res("evaluation", "summary.json"), caption="../report/summary.rst",
                       category="Evaluation"),
        plot=report(res("evaluation", "dice.png"), caption="../report/dice.rst",
                    category="Evaluation"),
    log:
        log_file("report.log"),
    localrule: True
    script:
        "../workflow_scripts/report.py"
