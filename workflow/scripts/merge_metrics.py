from segpipe.logs import log_to_file
from segpipe.summary import merge_metrics

log_to_file(snakemake.log[0])
merge_metrics(
    snakemake.input,
    metrics_out=snakemake.output.metrics,
    methods_out=snakemake.output.methods,
)
