import pandas as pd

from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.report import plot_objects

with one_line_errors():
    log_to_file(snakemake.log[0])
    plot_objects(
        pd.read_parquet(snakemake.input.objects, columns=["method", "area"]),
        pd.read_parquet(snakemake.input.metrics,
                        columns=["method", "image_id", "status", "n_objects"]),
        snakemake.output[0],
    )
