from segpipe.ground_truth import load_ground_truth
from segpipe.logs import log_to_file
from segpipe.planes import Reading
from segpipe.shard import run_shard

log_to_file(snakemake.log[0])
run_shard(
    snakemake.input.shard,
    snakemake.output.metrics,
    input_dir=snakemake.params.input_dir,
    method=snakemake.wildcards.method,
    settings=dict(snakemake.params.settings),
    masks_dir=snakemake.params.masks_dir,
    edges_dir=snakemake.params.edges_dir,
    ground_truth=load_ground_truth(snakemake.params.truth),
    threads=snakemake.threads,
    max_pixels=snakemake.params.max_image_pixels,
    objects_output=snakemake.output.objects,
    measure_objects=snakemake.params.measure_objects,
    mask_format=snakemake.params.mask_format,
    reading=Reading.from_config(snakemake.params.reading),
)
