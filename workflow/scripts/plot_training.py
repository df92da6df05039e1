import json
from pathlib import Path

import pandas as pd

from segpipe.errors import one_line_errors
from segpipe.logs import log_to_file
from segpipe.report.training import plot_training

with one_line_errors():
    log_to_file(snakemake.log[0])
    # Each model's files are in its own folder, named after it (results/models/{name}/).
    histories = {Path(p).parent.name: pd.read_parquet(p) for p in snakemake.input.histories}
    cards = {Path(p).parent.name: json.loads(Path(p).read_text()) for p in snakemake.input.cards}
    plot_training(histories, snakemake.output[0], cards=cards)
