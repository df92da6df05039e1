import os

from snakemake.utils import min_version

min_version("9.0")

# The repository root, where this file is: not workflow.basedir, which is the host
# workflow's folder when segpipe is used as a module (`module segpipe: snakefile: ...`).
SEGPIPE_ROOT = workflow.current_basedir


# Anchored at the Snakefile so that `snakemake -d elsewhere` finds the defaults too.
configfile: os.path.join(SEGPIPE_ROOT, "config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/samples.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/report.smk"


# The software of every job, with --software-deployment-method apptainer (see config).
container: config["container"]


rule all:
    input:
        LAYOUT.summary("metrics.parquet"),
        LAYOUT.summary("methods.parquet"),
        LAYOUT.summary("instances.parquet"),
        expand(LAYOUT.coco(), method=BATCHED),
        [list(model_outputs(name).values()) for name in TRAINED],
        report_figures() if config["report"] else [],


onsuccess:
    if report_missing_weights():
        raise WorkflowError("Mask R-CNN weights are missing (see above).")


onerror:
    report_missing_weights()
