# Lists input_dir. The fingerprint parameter changes when a file appears, disappears or
# changes (size, modification time), so Snakemake re-runs the listing then, and only then.
# The shard files it maintains are rewritten only where their images change, so only
# those shards re-run. Entries that are not images go to the skipped table.
checkpoint list_images:
    input:
        get_input_dir_dependency,
    output:
        LAYOUT.manifest,
        LAYOUT.skipped,
    log:
        log_path("list_images.log"),
    conda:
        "../../envs/classical.yaml"
    resources:
        # Listing 10^6 files and writing the manifest: minutes, a few hundred MB.
        runtime=30,
        mem_mb=4000,
    params:
        input_dir=config["input_dir"],
        shard_size=config["shard_size"],
        shard_dir=LAYOUT.shard_dir,
        hash_images=config["hash_images"],
        include=config["include"],
        exclude=config["exclude"],
        reading=get_reading_settings,
        # Where earlier runs' outputs of removed shards are deleted from.
        results_dir=get_out_dir,
        fingerprint=get_input_fingerprint,
    script:
        "../scripts/list_images.py"
