# One job per (method, shard) of every method the per-image runner runs. Masks are written beside the table as the images are
# done; the table is written last, atomically, and marks the job complete.
rule segment_shard:
    input:
        shard=out("manifest/shards/{shard}.json"),
    output:
        metrics=out("metrics/{method}/{shard}.parquet"),
        objects=out("objects/{method}/{shard}.parquet"),
    log:
        "logs/segment_shard/{method}/{shard}.log",
    benchmark:
        "logs/segment_shard/{method}/{shard}.benchmark.tsv"
    wildcard_constraints:
        method=one_of(CLASSICAL),
    conda:
        "../../envs/classical.yaml"
    threads: 1
    resources:
        runtime=get_segment_runtime,
        mem_mb=get_segment_mem_mb,
    params:
        input_dir=config["input_dir"],
        settings=get_method_settings,
        truth=get_truth_settings,
        masks_dir=lambda wildcards: out("masks"),
        edges_dir=lambda wildcards: out("edges"),
        max_image_pixels=config["max_image_pixels"],
        measure_objects=config["measure_objects"],
        mask_format=config["mask_format"],
        reading=get_reading_settings,
    script:
        "../scripts/segment_shard.py"


# The one GPU rule: Mask R-CNN, batched inside the job. Its threads are shared by the
# DataLoader workers (decoding), the main process (the GPU) and the writer processes
# (PNG, RLE, scores): see the maskrcnn settings `workers` and `writers`.
rule segment_shard_maskrcnn:
    input:
        shard=out("manifest/shards/{shard}.json"),
        weights=get_weights_input,
    output:
        metrics=out("metrics/{method}/{shard}.parquet"),
        instances=out("instances/{method}/{shard}.parquet"),
        objects=out("objects/{method}/{shard}.parquet"),
    log:
        "logs/segment_shard/{method}/{shard}.log",
    benchmark:
        "logs/segment_shard/{method}/{shard}.benchmark.tsv"
    wildcard_constraints:
        method=one_of(BATCHED),
    conda:
        "../../envs/maskrcnn.yaml"
    threads: 8
    resources:
        gpu=1,
        runtime=get_maskrcnn_runtime,
        mem_mb=get_maskrcnn_mem_mb,
    params:
        input_dir=config["input_dir"],
        settings=get_method_settings,
        truth=get_truth_settings,
        masks_dir=lambda wildcards: out("masks"),
        weights_dir="resources/weights",
        max_image_pixels=config["max_image_pixels"],
        measure_objects=config["measure_objects"],
        mask_format=config["mask_format"],
        reading=get_reading_settings,
    script:
        "../scripts/segment_shard_maskrcnn.py"
