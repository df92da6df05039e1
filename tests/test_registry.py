"""The registry describes a method fully: a new kind is one function, one descriptor and
one schema block, and the workflow, scoring, objects and summary follow its descriptor."""

import textwrap

import cv2
import numpy as np
import pandas as pd
import pytest

from segpipe.methods import LABEL_MEANINGS, REGISTRY, MethodSpec, load_plugins, register
from segpipe.methods.base import RUNNERS

from conftest import ROOT, blobs_image, encode, run_snakemake, write_config

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


# A kind added the documented way: its function and MethodSpec in a module, and one $defs
# block in the schema; nothing else of the workflow changes.
SPOTS = textwrap.dedent('''
    import numpy as np

    from segpipe.methods import MethodSpec, Segmentation, register


    def segment_spots(grey, *, level=128):
        return Segmentation(labels=(grey > level).astype(np.uint8))


    register(MethodSpec("spots", segment_spots, "foreground", "grey", summary="bright pixels"))
''')
SPOTS_BLOCK = textwrap.indent(textwrap.dedent('''
    spots:
      description: Bright pixels.
      type: object
      additionalProperties: false
      properties:
        kind: {const: spots}
        level: {type: integer, minimum: 0, maximum: 255, default: 128, description: Level.}
'''), "  ")


def test_a_kind_without_a_settings_block_is_named(tmp_path):
    register(MethodSpec("nosettings", print, "foreground"))
    try:
        from segpipe.config import load_schema

        with pytest.raises(ValueError, match="'nosettings' has no settings block"):
            load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    finally:
        REGISTRY.pop("nosettings")


@pytest.mark.e2e
def test_a_new_kind_is_one_function_one_descriptor_and_one_schema_block(tmp_path):
    import shutil

    tree = tmp_path / "workflow-copy"
    tree.mkdir()
    for part in ("Snakefile", "workflow", "config", "envs"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, tree / part)
    schema = tree / "workflow/schemas/config.schema.yaml"
    schema.write_text(schema.read_text().rstrip("\n") + "\n" + SPOTS_BLOCK)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "spots_method.py").write_text(SPOTS)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        (images / f"i{k}.png").write_bytes(encode(blobs_image(k), ".png"))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(images),
                       methods={"s": {"kind": "spots", "level": 100}})
    work = tmp_path / "work"
    work.mkdir()
    env = {"SEGPIPE_METHODS": "spots_method", "PYTHONPATH": str(tmp_path / "plugins")}
    run = ["-s", str(tree / "Snakefile"), "--configfile", cfg]
    run_snakemake(work, *run, env=env)
    metrics = pd.read_parquet(work / "results/summary/metrics.parquet")
    assert (metrics["status"] == "ok").all() and (metrics["kind"] == "spots").all()
    assert (metrics["n_objects"] > 0).all()
    bad = write_config(tmp_path / "bad.yaml", input_dir=str(images),
                       methods={"s": {"kind": "spots", "level": 300}})
    proc = run_snakemake(work, "-s", str(tree / "Snakefile"), "--configfile", bad, "-n",
                         check=False, env=env)
    assert proc.returncode != 0 and "methods.s.level" in proc.stdout + proc.stderr
