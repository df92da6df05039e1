from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.samples import write_sample_images

with one_line_errors():
    log_to_file(snakemake.log[0])
    write_sample_images(snakemake.output[0])
