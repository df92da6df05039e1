"""segpipe used as a Snakemake module from another workflow (`module segpipe: ...`)."""

import pandas as pd
import pytest

from conftest import ROOT, make_image_folder, run_snakemake

pytestmark = pytest.mark.e2e

HOST = '''
module segpipe:
    snakefile:
        "{snakefile}"
    config:
        {{"input_dir": "images", "shard_size": 3, "methods": {{"otsu": {{"kind": "threshold"}}}}}}


use rule * from segpipe as segpipe_*


rule all:
    input:
        rules.segpipe_all.input,
        "host.txt",
    default_target: True


rule host_step:
    input:
        "results/summary/metrics.parquet",
    output:
        "host.txt",
    shell:
        "echo read $(stat -c %s {{input}}) bytes > {{output}}"
'''


def test_a_host_workflow_imports_and_runs_segpipe(tmp_path):
    host = tmp_path / "host"
    ids = make_image_folder(host / "images")
    (host / "Snakefile").write_text(HOST.format(snakefile=ROOT / "Snakefile"))
    # the host's own folder holds no config/ or workflow/: segpipe finds its files itself
    proc = run_snakemake(host, "-s", host / "Snakefile")
    metrics = pd.read_parquet(host / "results/summary/metrics.parquet")
    assert sorted(metrics["image_id"]) == ids
    assert (metrics["status"] == "ok").sum() == len(ids) - 1  # broken.png is an error row
    assert (host / "host.txt").read_text().startswith("read ")
    assert "segpipe_segment_shard" in proc.stdout + proc.stderr
