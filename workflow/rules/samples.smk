rule write_sample_images:
    output:
        directory(SAMPLE_DIR),
    log:
        log_path("write_sample_images.log"),
    # A few bundled images: not worth a cluster job.
    localrule: True
    conda:
        "../../envs/classical.yaml"
    script:
        "../scripts/write_sample_images.py"
