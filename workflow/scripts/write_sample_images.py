from segpipe.logs import log_to_file
from segpipe.samples import write_sample_images

log_to_file(snakemake.log[0])
write_sample_images(snakemake.output[0])
