import pandas as pd

from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.report import write_report_page

with one_line_errors():
    log_to_file(snakemake.log[0])
    methods = pd.read_parquet(snakemake.input.methods)
    params = snakemake.params
    write_report_page(methods, snakemake.output[0], figures=snakemake.input.figures,
                      overlays=snakemake.input.overlays, metric=params.metric,
                      input_dir=params.input_dir, ground_truth_dir=params.ground_truth_dir)
