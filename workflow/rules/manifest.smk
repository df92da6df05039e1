# Lists input_dir once per run. The fingerprint parameter changes when files appear or
# disappear, so Snakemake re-runs the listing then, and only then. The shard files it
# maintains are rewritten only where their lists change, so only those shards re-run.
checkpoint list_images:
    input:
        get_input_dir_dependency,
    output:
        MANIFEST,
    log:
        "logs/list_images.log",
    conda:
        "../../envs/classical.yaml"
    resources:
        # Listing 10^6 files and writing the manifest: minutes, a few hundred MB.
        runtime=30,
        mem_mb=4000,
    params:
        input_dir=config["input_dir"],
        shard_size=config["shard_size"],
        shard_dir=SHARD_DIR,
        fingerprint=get_input_fingerprint,
    script:
        "../scripts/list_images.py"
