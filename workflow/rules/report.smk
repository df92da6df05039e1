# The report, drawn from the summary tables only when asked for (config key report,
# `segpipe run --report`, `segpipe report DIR`, the target draw_report): the figures,
# the leaderboard and every method's examples under report/, and report.html, one
# self-contained page of them all. Off, the default, a run stops at the tables.
rule plot_summary:
    input:
        metrics=LAYOUT.summary("metrics.parquet"),
        methods=LAYOUT.summary("methods.parquet"),
    output:
        distributions=LAYOUT.report("distributions.png"),
        quality=LAYOUT.report("quality_runtime.png"),
        leaderboard=LAYOUT.report("leaderboard.html"),
    log:
        log_path("plot_summary.log"),
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
        metrics=LAYOUT.summary("metrics.parquet"),
    output:
        LAYOUT.overlays(),
    log:
        log_path("plot_overlays", "{method}.log"),
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
        objects=LAYOUT.summary("objects.parquet"),
        metrics=LAYOUT.summary("metrics.parquet"),
    output:
        LAYOUT.report("objects.png"),
    log:
        log_path("plot_objects.log"),
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=30,
        mem_mb=8000,
    script:
        "../scripts/plot_objects.py"


# The training curves of every model the run trains (train.smk): losses and validation
# mask AP per epoch, the best epoch marked.
rule plot_training:
    input:
        histories=expand(
            os.path.join(LAYOUT.model("{name}"), "history.parquet"), name=TRAINED
        ),
        cards=expand(os.path.join(LAYOUT.model("{name}"), "model.json"), name=TRAINED),
    output:
        LAYOUT.report("training.png"),
    log:
        log_path("plot_training.log"),
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/plot_training.py"


# One HTML file that opens on everything: the leaderboard inline, the figures and the
# examples embedded, nothing to click and nothing beside it to carry along.
rule pack_report:
    input:
        methods=LAYOUT.summary("methods.parquet"),
        figures=[
            LAYOUT.report("quality_runtime.png"),
            LAYOUT.report("distributions.png"),
            *([LAYOUT.report("objects.png")] if config["measure_objects"] else []),
            *([LAYOUT.report("training.png")] if TRAINED else []),
        ],
        overlays=expand(LAYOUT.overlays(), method=METHODS),
    output:
        LAYOUT.report_page,
    log:
        log_path("pack_report.log"),
    conda:
        "../../envs/classical.yaml"
    resources:
        runtime=10,
        mem_mb=2000,
    params:
        metric=config["primary_metric"],
        input_dir=config["input_dir"],
        ground_truth_dir=config["ground_truth_dir"],
    script:
        "../scripts/pack_report.py"


# `snakemake draw_report`: the report of a finished run, drawn from its tables.
rule draw_report:
    input:
        report_figures(),
