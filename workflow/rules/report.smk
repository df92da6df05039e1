# Figures for `snakemake --report results/report.html` (under out_dir), drawn after every run.
rule plot_summary:
    input:
        metrics=out("summary/metrics.parquet"),
        methods=out("summary/methods.parquet"),
    output:
        distributions=report(
            out("report/distributions.png"),
            caption="../report/distributions.rst",
            category="1. Leaderboard",
        ),
        quality=report(
            out("report/quality_runtime.png"),
            caption="../report/quality_runtime.rst",
            category="1. Leaderboard",
        ),
        leaderboard=report(
            out("report/leaderboard.html"),
            caption="../report/leaderboard.rst",
            category="1. Leaderboard",
        ),
    log:
        "logs/plot_summary.log",
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        metric=config["primary_metric"],
    script:
        "../scripts/plot_summary.py"


rule plot_overlays:
    input:
        metrics=out("summary/metrics.parquet"),
    output:
        report(
            out("report/overlays/{method}.png"),
            caption="../report/overlays.rst",
            category="2. Examples",
            subcategory="{method}",
        ),
    log:
        "logs/plot_overlays/{method}.log",
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        input_dir=config["input_dir"],
        metric=config["primary_metric"],
        reading=get_reading_settings,
        truth=get_truth_settings,
    script:
        "../scripts/plot_overlays.py"


# Object areas and counts per method, from the per-object table (measure_objects).
rule plot_objects:
    input:
        objects=out("summary/objects.parquet"),
        metrics=out("summary/metrics.parquet"),
    output:
        report(
            out("report/objects.png"),
            caption="../report/objects.rst",
            category="1. Leaderboard",
        ),
    log:
        "logs/plot_objects.log",
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=30,
        mem_mb=8000,
    script:
        "../scripts/plot_objects.py"


# `snakemake draw_report`: the figures of a finished run, drawn from its tables (with
# config key report off, the default, the run stops at the tables).
rule draw_report:
    input:
        report_figures(),
