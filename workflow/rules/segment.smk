# One job per (method, shard), whichever runner the method's kind uses (segpipe.job). Masks
# are written as the images are done; the tables last, each atomically.
rule segment_shard:
    input:
        shard=LAYOUT.shard_file(),
    output:
        metrics=LAYOUT.metrics(),
        objects=LAYOUT.objects(),
    log:
        log_path("segment_shard", "{method}", "{shard}.log"),
    benchmark:
        log_path("segment_shard", "{method}", "{shard}.benchmark.tsv")
    wildcard_constraints:
        method=one_of(PER_IMAGE),
    conda:
        "../../envs/classical.yaml"
    threads: 1
    resources:
        runtime=get_segment_runtime,
        mem_mb=get_segment_mem_mb,
    params:
        input_dir=config["input_dir"],
        out_dir=get_out_dir,
        settings=get_method_settings,
        truth=get_truth_settings,
        weights_dir=WEIGHTS_DIR,
        max_image_pixels=config["max_image_pixels"],
        max_tiled_pixels=config["max_tiled_pixels"],
        tiles=get_method_tiles,
        measure_objects=config["measure_objects"],
        mask_format=config["mask_format"],
        reading=get_reading_settings,
    script:
        "../scripts/segment_shard.py"


# The one device (GPU) rule: kinds of the batch runner (Mask R-CNN), batched inside the
# job. Its threads are shared by the DataLoader workers (decoding), the main process (the
# GPU) and the writer processes (PNG, RLE, scores): see the settings workers and writers.
rule segment_shard_batch:
    input:
        shard=LAYOUT.shard_file(),
        weights=get_weights_input,
    output:
        metrics=LAYOUT.metrics(),
        instances=LAYOUT.instances(),
        objects=LAYOUT.objects(),
    log:
        log_path("segment_shard", "{method}", "{shard}.log"),
    benchmark:
        log_path("segment_shard", "{method}", "{shard}.benchmark.tsv")
    wildcard_constraints:
        method=one_of(BATCHED),
    conda:
        "../../envs/maskrcnn.yaml"
    threads: 8
    resources:
        gpu=1,
        runtime=get_batch_runtime,
        mem_mb=get_batch_mem_mb,
    params:
        input_dir=config["input_dir"],
        out_dir=get_out_dir,
        settings=get_method_settings,
        truth=get_truth_settings,
        weights_dir=WEIGHTS_DIR,
        max_image_pixels=config["max_image_pixels"],
        max_tiled_pixels=config["max_tiled_pixels"],
        tiles=get_method_tiles,
        measure_objects=config["measure_objects"],
        mask_format=config["mask_format"],
        reading=get_reading_settings,
    script:
        "../scripts/segment_shard.py"
