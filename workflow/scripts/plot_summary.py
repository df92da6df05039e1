import pandas as pd

from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.report import leaderboard_html, plot_metric_distributions, plot_quality_runtime

with one_line_errors():
    log_to_file(snakemake.log[0])
    metrics = pd.read_parquet(snakemake.input.metrics)
    methods = pd.read_parquet(snakemake.input.methods)
    plot_metric_distributions(metrics, snakemake.output.distributions,
                              primary=snakemake.params.metric)
    plot_quality_runtime(methods, snakemake.output.quality, metric=snakemake.params.metric)
    leaderboard_html(methods, snakemake.output.leaderboard, metric=snakemake.params.metric)
