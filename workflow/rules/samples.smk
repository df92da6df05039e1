rule write_sample_images:
    output:
        directory("resources/sample_images"),
    log:
        "logs/write_sample_images.log",
    conda:
        "../../envs/classical.yaml"
    script:
        "../scripts/write_sample_images.py"
