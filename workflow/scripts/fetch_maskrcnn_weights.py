from segpipe.logs import log_to_file
from segpipe.maskrcnn.weights import fetch_weights

log_to_file(snakemake.log[0])
fetch_weights(snakemake.params.url, snakemake.params.path, status_out=snakemake.output[0])
