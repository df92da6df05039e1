from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.maskrcnn.weights import fetch_weights

with one_line_errors():
    log_to_file(snakemake.log[0])
    fetch_weights(snakemake.params.url, snakemake.params.path, status_out=snakemake.output[0])
