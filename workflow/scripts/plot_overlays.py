import pandas as pd

from segpipe.errors import one_line_errors
from segpipe.ground_truth import load_ground_truth
from segpipe.logs import log_to_file
from segpipe.planes import Reading
from segpipe.report import plot_overlays

with one_line_errors():
    log_to_file(snakemake.log[0])
    plot_overlays(
        pd.read_parquet(snakemake.input.metrics),
        snakemake.output[0],
        input_dir=snakemake.params.input_dir,
        method=snakemake.wildcards.method,
        metric=snakemake.params.metric,
        reading=Reading.from_config(snakemake.params.reading),
        ground_truth=load_ground_truth(snakemake.params.truth),
    )
