"""The registry describes a method fully: a new kind is one function, one descriptor and
one schema block, and the workflow, scoring, objects and summary follow its descriptor."""

import textwrap

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import blobs_image, encode, run_snakemake, write_config

from segpipe.methods import LABEL_MEANINGS, REGISTRY, MethodSpec, load_plugins, register
from segpipe.methods.base import RUNNERS

# A kind the package does not have: each bright blob is one instance. Registered from a
# module named in $SEGPIPE_METHODS, with its schema block in the descriptor.
TOY = textwrap.dedent('''
    import cv2
    import numpy as np

    from segpipe.methods import MethodSpec, Segmentation, register


    def segment_toy(grey, *, level=0.5):
        bright = (grey > level * 255).astype(np.uint8)
        _, labels = cv2.connectedComponents(bright, connectivity=8)
        return Segmentation(labels=labels.astype(np.uint16))


    register(MethodSpec(
        "toy", segment_toy, "instances", "grey", summary="bright blobs as instances",
        schema={"level": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}},
    ))
''')


def test_every_descriptor_is_complete():
    for kind, spec in REGISTRY.items():
        assert spec.kind == kind
        assert spec.labels in LABEL_MEANINGS and spec.runner in RUNNERS
        assert spec.colour in ("grey", "rgb") and spec.summary
        assert spec.has_objects == (spec.labels in ("foreground", "instances"))


def test_a_descriptor_with_an_unknown_meaning_or_runner_is_refused():
    with pytest.raises(ValueError, match="labels must be one of"):
        MethodSpec("x", print, "blobs")
    with pytest.raises(ValueError, match="runner must be one of"):
        MethodSpec("x", print, "instances", runner="gpu")
    with pytest.raises(ValueError, match="registered already"):
        register(MethodSpec("threshold", print, "foreground"))


def test_a_missing_plugin_module_names_the_variable():
    with pytest.raises(ImportError, match="SEGPIPE_METHODS.*no_such_module"):
        load_plugins("no_such_module")


def blob_truth(image):
    _, labels = cv2.connectedComponents((image > 128).astype(np.uint8), connectivity=8)
    return labels.astype(np.uint16)


@pytest.mark.e2e
def test_a_toy_method_runs_end_to_end_with_no_rule_change(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_method.py").write_text(TOY)
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truth.mkdir()
    for k in range(3):
        image = blobs_image(k)
        (images / f"i{k}.png").write_bytes(encode(image, ".png"))
        (truth / f"i{k}.png").write_bytes(encode(blob_truth(image), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images), ground_truth_dir=str(truth),
                       methods={"blobs": {"kind": "toy"}, "cc": {"kind": "threshold"}})
    work = tmp_path / "work"
    work.mkdir()
    env = {"SEGPIPE_METHODS": "toy_method", "PYTHONPATH": str(tmp_path / "plugins")}
    run_snakemake(work, "--configfile", cfg, env=env)

    metrics = pd.read_parquet(work / "results/summary/metrics.parquet")
    mine = metrics[metrics["method"] == "blobs"]
    assert (mine["status"] == "ok").all() and (mine["kind"] == "toy").all()
    assert '"level":0.5' in mine["params"].iloc[0]  # the descriptor's schema default
    # Instances equal to the truth: every object score is perfect.
    assert (mine["object_f1_50"] == 1.0).all() and (mine["iou"] == 1.0).all()
    assert (mine["n_objects"] == mine["n_labels"]).all()
    methods = pd.read_parquet(work / "results/summary/methods.parquet").set_index("method")
    assert methods.loc["blobs", "coco_ap"] == pytest.approx(1.0)
    objects = pd.read_parquet(work / "results/summary/objects.parquet")
    assert len(objects[objects["method"] == "blobs"]) == mine["n_labels"].sum()
    # A wrong setting fails before any job, naming the key, as for built-in kinds.
    bad = write_config(tmp_path / "bad.yaml", input_dir=str(images),
                       methods={"blobs": {"kind": "toy", "level": 3}})
    proc = run_snakemake(work, "--configfile", bad, "-n", check=False, env=env)
    assert proc.returncode != 0 and "methods.blobs.level" in proc.stdout + proc.stderr
