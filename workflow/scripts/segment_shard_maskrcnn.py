from segpipe.ground_truth import load_ground_truth
from segpipe.logs import log_to_file
from segpipe.planes import Reading
from segpipe.maskrcnn.shard import run_maskrcnn_shard

log_to_file(snakemake.log[0])
run_maskrcnn_shard(
    snakemake.input.shard,
    snakemake.output.metrics,
    snakemake.output.instances,
    input_dir=snakemake.params.input_dir,
    method=snakemake.wildcards.method,
    settings=dict(snakemake.params.settings),
    masks_dir=snakemake.params.masks_dir,
    weights_dir=snakemake.params.weights_dir,
    ground_truth=load_ground_truth(snakemake.params.truth),
    threads=snakemake.threads,
    max_pixels=snakemake.params.max_image_pixels,
    objects_out=snakemake.output.objects,
    measure_objects=snakemake.params.measure_objects,
    mask_format=snakemake.params.mask_format,
    reading=Reading.from_config(snakemake.params.reading),
)
