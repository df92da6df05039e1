from segpipe.errors import one_line_errors
from segpipe.job import ShardJob, run_shard_job
from segpipe.logs import log_to_file

with one_line_errors():
    log_to_file(snakemake.log[0])
    run_shard_job(ShardJob.from_snakemake(snakemake))
