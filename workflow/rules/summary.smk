rule merge_metrics:
    input:
        metrics=get_metrics_files,
        instances=get_instance_files,
    output:
        metrics="results/summary/metrics.parquet",
        methods="results/summary/methods.parquet",
        instances="results/summary/instances.parquet",
        coco=expand("results/summary/{method}.coco.json", method=BATCHED),
    log:
        "logs/merge_metrics.log",
    conda:
        "../../envs/classical.yaml"
    params:
        batched=BATCHED,
    script:
        "../scripts/merge_metrics.py"
