from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.manifest import update_manifest
from segpipe.planes import Reading

with one_line_errors():
    log_to_file(snakemake.log[0])
    update_manifest(
        snakemake.params.input_dir,
        shard_dir=snakemake.params.shard_dir,
        shard_size=snakemake.params.shard_size,
        manifest_out=snakemake.output[0],
        skipped_out=snakemake.output[1],
        hash_images=snakemake.params.hash_images,
        results_dir=snakemake.params.results_dir,
        include=snakemake.params.include,
        exclude=snakemake.params.exclude,
        reading=Reading.from_config(snakemake.params.reading),
    )
