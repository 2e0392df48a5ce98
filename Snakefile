# 3D medical image segmentation: MSD dataset -> plan -> preprocess -> train -> predict -> evaluate.
# The stage contract (file layout, rule names, config keys) is described in README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/validate.smk"
include: "rules/fingerprint.smk"
include: "rules/plan.smk"
include: "rules/preprocess.smk"
include: "rules/shard.smk"
include: "rules/train.smk"
include: "rules/cascade.smk"
include: "rules/predict.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/postprocess.smk"
include: "rules/report.smk"
include: "rules/benchmark.smk"


rule all:
    input:
        final_targets,
    default_target: True
