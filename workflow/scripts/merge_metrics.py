from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.summary import merge_metrics

with one_line_errors():
    log_to_file(snakemake.log[0])
    merge_metrics(
        snakemake.input.metrics,
        metrics_out=snakemake.output.metrics,
        methods_out=snakemake.output.methods,
        instance_paths=snakemake.input.instances,
        instances_out=snakemake.output.instances,
        coco_outs=dict(zip(snakemake.params.batched, snakemake.output.coco)),
        method_score_paths=dict(zip(snakemake.params.scored, snakemake.input.get("scores", []))),
        primary_metric=snakemake.params.primary_metric,
        object_paths=snakemake.input.get("objects", []),
        objects_out=snakemake.output.objects[0] if snakemake.output.objects else None,
    )
