from segpipe.errors import one_line_errors
from segpipe.ground_truth import load_ground_truth
from segpipe.logs import log_to_file
from segpipe.method_scores import write_method_coco_ap
from segpipe.methods import get_method

with one_line_errors():
    log_to_file(snakemake.log[0])
    write_method_coco_ap(
        snakemake.input.metrics,
        snakemake.input.instances,
        snakemake.output[0],
        ground_truth=load_ground_truth(snakemake.params.truth),
        meaning=get_method(snakemake.params.settings["kind"]).labels,
        object_paths=snakemake.input.objects,
    )
