rule write_sample_images:
    output:
        directory("resources/sample_images"),
    log:
        "logs/write_sample_images.log",
    # A few bundled images: not worth a cluster job.
    localrule: True
    conda:
        "../../envs/classical.yaml"
    script:
        "../scripts/write_sample_images.py"
