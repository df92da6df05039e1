# Mask R-CNN trained on the user's labels (the config's train section), one job per
# model: results/models/{name}/ (segpipe.training). A GPU rule like segment_shard_batch;
# its threads are shared by the DataLoader workers (decoding, augmenting) and the main
# process. A killed job's rerun resumes from last.pt, which is not a declared output.
rule train_maskrcnn:
    input:
        base=get_train_inputs,
    output:
        **model_outputs("{name}"),
    log:
        log_path("train_maskrcnn", "{name}.log"),
    benchmark:
        log_path("train_maskrcnn", "{name}.benchmark.tsv")
    conda:
        "../../envs/maskrcnn.yaml"
    threads: 8
    resources:
        gpu=get_train_gpus,
        runtime=get_train_runtime,
        mem_mb=get_train_mem_mb,
    params:
        settings=get_train_settings,
        folders=get_train_fingerprint,
        weights_dir=WEIGHTS_DIR,
    script:
        "../scripts/train_maskrcnn.py"


# `segpipe train CONFIG`: the trained models only, nothing segmented.
rule train_models:
    input:
        [list(model_outputs(name).values()) for name in TRAINED],
    localrule: True
