from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.training.loop import train_model

with one_line_errors():
    log_to_file(snakemake.log[0])
    train_model(
        snakemake.wildcards.name,
        dict(snakemake.params.settings),
        snakemake.output.model.rsplit("/", 1)[0],
        threads=snakemake.threads,
        weights_dir=snakemake.params.weights_dir,
    )
