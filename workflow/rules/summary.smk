rule score_coco_ap:
    input:
        metrics=get_method_metrics_files,
        instances=get_method_instance_files,
        objects=get_method_object_files,
    output:
        LAYOUT.coco_ap(),
    log:
        log_path("score_coco_ap", "{method}.log"),
    benchmark:
        log_path("score_coco_ap", "{method}.benchmark.tsv")
    conda:
        "../../envs/maskrcnn.yaml"
    resources:
        # Masks are read one image at a time; what grows is about 100 bytes per object
        # while they are ranked (docs/benchmarks.md, "coco_ap"): 8 GB is some 60 million
        # objects. Doubled at each retry.
        runtime=lambda wildcards, attempt: 120 * attempt,
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
    params:
        truth=get_truth_settings,
        settings=get_method_settings,
    script:
        "../scripts/score_coco_ap.py"


rule merge_metrics:
    input:
        unpack(get_merge_inputs),
    output:
        metrics=LAYOUT.summary("metrics.parquet"),
        methods=LAYOUT.summary("methods.parquet"),
        instances=LAYOUT.summary("instances.parquet"),
        objects=(
            [LAYOUT.summary("objects.parquet")] if config["measure_objects"] else []
        ),
        coco=expand(LAYOUT.coco(), method=BATCHED),
    log:
        log_path("merge_metrics.log"),
    conda:
        "../../envs/classical.yaml"
    resources:
        # Measured: 4x10^6 rows took 43.5 s and 4.04 GB.
        runtime=60,
        mem_mb=8000,
    params:
        batched=BATCHED,
        scored=METHODS if config["ground_truth_dir"] is not None else [],
        primary_metric=config["primary_metric"],
    script:
        "../scripts/merge_metrics.py"
