rule merge_metrics:
    input:
        get_metrics_files,
    output:
        metrics="results/summary/metrics.parquet",
        methods="results/summary/methods.parquet",
    log:
        "logs/merge_metrics.log",
    conda:
        "../../envs/classical.yaml"
    script:
        "../scripts/merge_metrics.py"
