# One job per (method, shard). Masks are written beside the table as the images are
# done; the table is written last, atomically, and marks the job complete.
rule segment_shard:
    input:
        shard=SHARD_DIR + "/{shard}.json",
    output:
        "results/metrics/{method}/{shard}.parquet",
    params:
        input_dir=config["input_dir"],
        settings=get_method_settings,
        masks_dir="results/masks",
        edges_dir="results/edges",
    log:
        "logs/segment_shard/{method}/{shard}.log",
    benchmark:
        "logs/segment_shard/{method}/{shard}.benchmark.tsv"
    threads: 1
    conda:
        "../../envs/classical.yaml"
    script:
        "../scripts/segment_shard.py"
