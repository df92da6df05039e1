"""Every config mistake is named, with its key, before any job runs.

The table is run through both ways a config reaches validation: ``segpipe run --config
FILE`` (:func:`segpipe.config.compose_run_config`) and ``snakemake --configfile FILE``
(Snakemake merges the file into the defaults, then common.smk calls
:func:`segpipe.config.resolve_config` with the file). A few of the rows are run end to end
at the bottom.
"""

import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from segpipe.config import (
    MAX_METHODS,
    StrictLoader,
    compose_run_config,
    load_config_file,
    load_schema,
    resolve_config,
)
from segpipe.errors import ConfigError, RunConfigError

from conftest import ROOT, blobs_image, encode, run_snakemake

DEFAULTS = ROOT / "config/config.yaml"
SCHEMA_PATH = ROOT / "workflow/schemas/config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)

M = "methods:\n  m: "  # the start of a config whose one method is m

# (YAML text, the dotted key the message must name). Input folders are the test's own.
MISTAKES = [
    # keys that are not strings (YAML reads these as numbers, booleans, null, dates)
    ("methods:\n  1: {kind: threshold}\n", "methods.1"),
    ("1: x\nmethods:\n  m: {kind: threshold}\n", "1"),
    ("1.5: x\nmethods:\n  m: {kind: threshold}\n", "1.5"),
    ("true: 1\nmethods:\n  m: {kind: threshold}\n", "True"),
    ("methods:\n  yes: {kind: threshold}\n", "methods.True"),
    ("methods:\n  null: {kind: threshold}\n", "methods.None"),
    ("methods:\n  2024-01-01: {kind: threshold}\n", "methods.2024-01-01"),
    (M + "{kind: threshold, 2: x, y: 3}\n", "methods.m.2"),
    ("intensity_range: {1: [0, 1]}\n" + M + "{kind: threshold}\n", "intensity_range.1"),
    # numbers that are not finite
    (M + "{kind: threshold, method: value, value: .nan}\n", "methods.m.value"),
    (M + "{kind: watershed, sigma: .inf}\n", "methods.m.sigma"),
    (M + "{kind: edges, threshold: -.inf}\n", "methods.m.threshold"),
    (M + "{kind: region_growing, tolerance: .NaN}\n", "methods.m.tolerance"),
    (M + "{kind: superpixels, compactness: .inf}\n", "methods.m.compactness"),
    (M + "{kind: multi_threshold, thresholds: [0.2, .nan]}\n", "methods.m.thresholds.1"),
    (M + "{kind: threshold, method: value, value: [0.2, .nan]}\n", "methods.m.value.1"),
    (M + "{kind: maskrcnn, score_threshold: .nan}\n", "methods.m.score_threshold"),
    ("intensity_range: [0, .inf]\n" + M + "{kind: threshold}\n", "intensity_range.1"),
    ("intensity_range: {percentile: [1, .nan]}\n" + M + "{kind: threshold}\n",
     "intensity_range.percentile.1"),
    ("max_image_pixels: .inf\n" + M + "{kind: threshold}\n", "max_image_pixels"),
    ("time: -.inf\n" + M + "{kind: threshold}\n", "time"),
    # floats where an integer goes (a whole-number float is taken: see the tests below)
    ("shard_size: 2.5\n" + M + "{kind: threshold}\n", "shard_size"),
    ("boundary_tolerance: 1.5\n" + M + "{kind: threshold}\n", "boundary_tolerance"),
    (M + "{kind: kmeans, k: 3.5}\n", "methods.m.k"),
    (M + "{kind: watershed, footprint: 2.5}\n", "methods.m.footprint"),
    (M + "{kind: maskrcnn, workers: 1.5}\n", "methods.m.workers"),
    (M + "{kind: kmeans, k: [3, 4.5]}\n", "methods.m_k4p5.k"),
    # keys given twice, at any depth
    ("shard_size: 3\n" + M + "{kind: threshold}\nshard_size: 4\n", "shard_size"),
    ("methods:\n  otsu:\n    kind: threshold\n    kind: kmeans\n", "methods.otsu.kind"),
    ("methods:\n  otsu: {kind: threshold}\n  otsu: {kind: kmeans}\n", "methods.otsu"),
    (M + "{kind: kmeans, k: 3, k: 4}\n", "methods.m.k"),
    ("exclude: ['*.txt']\nmethods: {m: {kind: threshold}}\nexclude: []\n", "exclude"),
    ("methods: {}\nmethods:\n  m: {kind: threshold}\n", "methods"),
    # sweeps past the limit, refused before they expand
    (M + "{kind: kmeans, k: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], seed: [" + ", ".join(
        map(str, range(100))) + "], n_init: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n", "methods.m"),
    ("methods:\n" + "".join(f"  m{i}: {{kind: kmeans, seed: [{i}, {i + 1000}]}}\n"
                            for i in range(501)), "methods"),
    # unknown keys at every level
    ("shard_szie: 3\n" + M + "{kind: threshold}\n", "shard_szie"),
    (M + "{kind: threshold, thresh: 0.5}\n", "methods.m.thresh"),
    (M + "{kind: kmeans, colour_space: lab}\n", "methods.m.colour_space"),
    # wrong types
    ("shard_size: ten\n" + M + "{kind: threshold}\n", "shard_size"),
    ("measure_objects: 'no'\n" + M + "{kind: threshold}\n", "measure_objects"),
    ("hash_images: 'yes'\n" + M + "{kind: threshold}\n", "hash_images"),
    ("report: 1\n" + M + "{kind: threshold}\n", "report"),
    ("include: '*.tif'\n" + M + "{kind: threshold}\n", "include"),
    ("exclude: {a: 1}\n" + M + "{kind: threshold}\n", "exclude"),
    ("container: 5\n" + M + "{kind: threshold}\n", "container"),
    ("channel: 1.5\n" + M + "{kind: threshold}\n", "channel"),
    ("channel: []\n" + M + "{kind: threshold}\n", "channel"),
    (M + "{kind: kmeans, k: five}\n", "methods.m.k"),
    (M + "{kind: maskrcnn, amp: maybe}\n", "methods.m.amp"),
    (M + "{kind: [threshold, kmeans]}\n", "methods.m.kind"),
    # out of range
    ("shard_size: 0\n" + M + "{kind: threshold}\n", "shard_size"),
    ("max_image_pixels: 0\n" + M + "{kind: threshold}\n", "max_image_pixels"),
    ("boundary_tolerance: -1\n" + M + "{kind: threshold}\n", "boundary_tolerance"),
    ("out_dir: ''\n" + M + "{kind: threshold}\n", "out_dir"),
    ("exclude: ['']\n" + M + "{kind: threshold}\n", "exclude.0"),
    ("intensity_range: [5, 1]\n" + M + "{kind: threshold}\n", "intensity_range"),
    ("intensity_range: [0]\n" + M + "{kind: threshold}\n", "intensity_range"),
    ("intensity_range: {percentile: [99, 1]}\n" + M + "{kind: threshold}\n",
     "intensity_range.percentile"),
    (M + "{kind: threshold, method: value, value: 2}\n", "methods.m.value"),
    (M + "{kind: multi_threshold, classes: 40}\n", "methods.m.classes"),
    (M + "{kind: multi_threshold, thresholds: [0.5, 0.2]}\n", "methods.m.thresholds"),
    (M + "{kind: edges, min_region_size: 0}\n", "methods.m.min_region_size"),
    (M + "{kind: kmeans, k: 1}\n", "methods.m.k"),
    (M + "{kind: kmeans, seed: -1}\n", "methods.m.seed"),
    (M + "{kind: watershed, min_distance: 0}\n", "methods.m.min_distance"),
    (M + "{kind: watershed, threshold: 1.5}\n", "methods.m.threshold"),
    (M + "{kind: superpixels, n_segments: 0}\n", "methods.m.n_segments"),
    (M + "{kind: region_growing, tolerance: 0}\n", "methods.m.tolerance"),
    (M + "{kind: maskrcnn, canvas_step: 48}\n", "methods.m.canvas_step"),
    (M + "{kind: maskrcnn, weights: ''}\n", "methods.m.weights"),
    # bad enums
    ("z: sum\n" + M + "{kind: threshold}\n", "z"),
    ("intensity_range: auto\n" + M + "{kind: threshold}\n", "intensity_range"),
    ("mask_format: jpg\n" + M + "{kind: threshold}\n", "mask_format"),
    ("primary_metric: f1\n" + M + "{kind: threshold}\n", "primary_metric"),
    ("ground_truth_kind: masks\n" + M + "{kind: threshold}\n", "ground_truth_kind"),
    (M + "{kind: blobs}\n", "methods.m.kind"),
    (M + "{kind: threshold, method: otsuu}\n", "methods.m.method"),
    (M + "{kind: threshold, foreground: light}\n", "methods.m.foreground"),
    (M + "{kind: edges, operator: prewitt}\n", "methods.m.operator"),
    (M + "{kind: watershed, markers: peaks}\n", "methods.m.markers"),
    (M + "{kind: superpixels, algorithm: quickshift}\n", "methods.m.algorithm"),
    (M + "{kind: maskrcnn, device: gpu}\n", "methods.m.device"),
    # settings that need or refuse one another
    (M + "{kind: threshold, method: value}\n", "methods.m.value"),
    (M + "{kind: threshold, value: 0.3}\n", "methods.m.value"),
    (M + "{kind: multi_threshold}\n", "methods.m"),
    # methods: empty, missing, a list, bad names, missing kind, not a mapping
    ("methods: {}\n", "methods"),
    ("methods:\n", "methods"),
    ("methods: [otsu, kmeans]\n", "methods"),
    ("methods:\n  a/b: {kind: threshold}\n", "methods"),
    ("methods:\n  2fast: {kind: threshold}\n", "methods"),
    ('methods:\n  "otsu\\n": {kind: threshold}\n', "methods.'otsu\\n'"),
    (M + "{method: otsu}\n", "methods.m"),
    (M + "threshold\n", "methods.m"),
    (M + "[kind, threshold]\n", "methods.m"),
    (M + "null\n", "methods.m"),
    # sweeps: a name taken, a bad value, two values that are one
    ("methods:\n  km: {kind: kmeans, k: [3]}\n  km_k3: {kind: kmeans}\n", "methods.km"),
    ("methods:\n  km: {kind: kmeans, k: [3, 1]}\n", "methods.km_k1.k"),
    ("methods:\n  km: {kind: kmeans, k: [3.0, 3]}\n", "methods.km"),
    # ground truth
    ("ground_truth_dir: /nonexistent/truth\n" + M + "{kind: threshold}\n", "ground_truth_dir"),
    ("ground_truth_pattern: '{base}.tif'\n" + M + "{kind: threshold}\n",
     "ground_truth_pattern"),
    # a list that holds itself (an alias inside its own anchor)
    ("exclude: &x [*x]\n" + M + "{kind: threshold}\n", "exclude.0"),
]


def test_the_table_is_large_and_its_rows_distinct():
    assert len(MISTAKES) >= 60
    assert len({text for text, _ in MISTAKES}) == len(MISTAKES)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"x")
    return folder


def through_segpipe_run(file, images):
    return compose_run_config(DEFAULTS, SCHEMA_PATH, input_dir=images, config_file=file)


def through_snakemake(file, images):
    """What common.smk does with ``snakemake --configfile file``: Snakemake loads the
    defaults and the file (a key given twice: the last wins) and merges them key by key."""
    config = yaml.safe_load(DEFAULTS.read_text())
    update_config(config, yaml.safe_load(file.read_text()) or {})
    config["input_dir"] = str(images)
    return resolve_config(config, SCHEMA, configfiles=[file])


@pytest.mark.parametrize("way", [through_segpipe_run, through_snakemake])
@pytest.mark.parametrize("text, key", MISTAKES)
def test_a_mistake_names_its_key(tmp_path, images, way, text, key):
    file = tmp_path / "my.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        way(file, images)
    assert info.value.key == key
    assert f"config key '{key}': " in str(info.value)


def test_a_key_given_twice_names_the_file_and_both_lines(tmp_path, images):
    file = tmp_path / "twice.yaml"
    file.write_text("shard_size: 3\nmethods:\n  otsu:\n    kind: threshold\n"
                    "    method: otsu\n    kind: kmeans\n\nshard_size: 7\n")
    for way in (through_segpipe_run, through_snakemake):
        with pytest.raises(ConfigError) as info:
            way(file, images)
        # the first duplicate in the file is the one named
        assert str(info.value) == (f"config key 'methods.otsu.kind': given twice in {file}, "
                                   f"at lines 4 and 6")
    file.write_text("methods:\n  otsu: {kind: threshold}\n  km: {kind: kmeans}\n"
                    "  otsu: {kind: edges}\n")
    with pytest.raises(ConfigError, match=r"'methods.otsu': given twice in .*, at lines 2 and 4"):
        through_segpipe_run(file, images)


def test_the_strict_loader_reads_what_safe_load_reads_without_duplicates():
    text = (DEFAULTS.read_text() + "extra:\n  base: &b {x: 1, y: 2}\n"
            "  merged:\n    <<: *b\n    y: 3\n  same_anchor_twice: [*b, *b]\n")
    assert yaml.load(text, Loader=StrictLoader) == yaml.safe_load(text)
    assert load_config_file(DEFAULTS) == yaml.safe_load(DEFAULTS.read_text())
    # equal once loaded is the same key: 1 and 0x1, a and "a"
    for text in ("1: a\n0x1: b\n", "a: 1\n'a': 2\n"):
        with pytest.raises(ConfigError, match="given twice"):
            yaml.load(text, Loader=StrictLoader)
    # unhashable keys stay YAML's own error
    with pytest.raises(yaml.YAMLError):
        yaml.load("? [a, b]\n: 1\n", Loader=StrictLoader)


def test_a_yaml_mistake_is_a_run_config_error_naming_the_line(tmp_path, images):
    file = tmp_path / "bad.yaml"
    file.write_text("methods:\n  m: {kind: threshold\n")
    with pytest.raises(RunConfigError, match=r"bad.yaml: not valid YAML \(line 3"):
        through_segpipe_run(file, images)


def test_whole_number_floats_are_the_integers_they_spell(tmp_path, images):
    file = tmp_path / "floats.yaml"
    file.write_text(
        "shard_size: 2.0\nboundary_tolerance: 1.0\nchannel: 0.0\nz: 1.0\n"
        "max_image_pixels: 1.0e+6\n"
        "methods:\n"
        "  km: {kind: kmeans, k: 3.0, seed: 1.0}\n"
        "  sweep: {kind: kmeans, k: [2.0, 4.0]}\n"
        "  ws: {kind: watershed, min_distance: 5.0, footprint: 3.0, sigma: 2.0}\n"
        "  mr: {kind: maskrcnn, workers: 2.0, writers: 0.0, canvas_step: 64.0}\n")
    config = through_snakemake(file, images)
    ints = [config["shard_size"], config["boundary_tolerance"], config["channel"],
            config["z"], config["max_image_pixels"], config["methods"]["km"]["k"],
            config["methods"]["km"]["seed"], config["methods"]["ws"]["min_distance"],
            config["methods"]["ws"]["footprint"], config["methods"]["mr"]["workers"],
            config["methods"]["mr"]["writers"], config["methods"]["mr"]["canvas_step"]]
    assert ints == [2, 1, 0, 1, 1_000_000, 3, 1, 5, 3, 2, 0, 64]
    assert all(type(v) is int for v in ints)
    # named as the integers they are, before the sweep expands
    assert {"sweep_k2", "sweep_k4"} <= set(config["methods"])
    assert type(config["methods"]["sweep_k4"]["k"]) is int
    # a number setting keeps its float: outputs and settings stay as they were
    assert type(config["methods"]["ws"]["sigma"]) is float
    # segpipe run takes the file and records it as written (Snakemake resolves it again)
    assert through_segpipe_run(file, images)["methods"]["km"]["k"] == 3.0


def test_nan_and_inf_from_the_command_line_stay_strings_and_are_refused(images):
    # --config 'methods={m: {kind: watershed, sigma: inf}}' gives the string "inf"
    config = {"input_dir": str(images), "methods": {"m": {"kind": "watershed", "sigma": "inf"}}}
    with pytest.raises(ConfigError, match="'inf' is not of type 'number'") as info:
        resolve_config(config, SCHEMA)
    assert info.value.key == "methods.m.sigma"


def test_the_method_limit_is_checked_before_anything_expands(images):
    # 10^30 methods: expanding them would never end
    lists = {key: list(range(1000)) for key in ("seed", "sample_size", "n_init")}
    config = {"input_dir": str(images), "methods": {
        "m": {"kind": "kmeans", **lists, "k": list(range(2, 255)) * 4},
        "otsu": {"kind": "threshold"}}}
    with pytest.raises(ConfigError) as info:
        resolve_config(config, SCHEMA)
    count = 1000 ** 3 * 253 * 4
    assert str(info.value) == (f"config key 'methods.m': the sweep gives {count:,} methods "
                               f"(1000 seed x 1000 sample_size x 1000 n_init x 1012 k); "
                               f"a config may give at most {MAX_METHODS:,}")


def test_exactly_the_limit_runs_and_one_more_does_not(images):
    seeds = list(range(MAX_METHODS - 1))
    methods = {"m": {"kind": "kmeans", "seed": seeds}, "otsu": {"kind": "threshold"}}
    config = resolve_config({"input_dir": str(images), "methods": methods}, SCHEMA)
    assert len(config["methods"]) == MAX_METHODS
    methods["other"] = {"kind": "edges"}
    with pytest.raises(ConfigError, match=f"{MAX_METHODS + 1:,} methods once the sweeps") as info:
        resolve_config({"input_dir": str(images), "methods": methods}, SCHEMA)
    assert info.value.key == "methods"


def test_the_limit_is_documented_where_methods_are():
    description = SCHEMA["properties"]["methods"]["description"]
    assert f"At most {MAX_METHODS:,} methods" in description
    reference = (ROOT / "config/README.md").read_text()
    assert f"At most {MAX_METHODS:,} methods" in reference
    assert "k: 3.0 is k: 3" in reference and ".nan" in reference


# --- end to end: nothing runs, the key is named, no traceback -----------------------

E2E_MISTAKES = [
    ("methods:\n  1: {kind: threshold}\n", "methods.1"),
    ("1: x\nmethods:\n  otsu: {kind: threshold}\n", "1"),
    ("methods:\n  otsu: {kind: threshold, method: value, value: .nan}\n", "methods.otsu.value"),
    ("shard_size: 3\nmethods:\n  otsu: {kind: threshold}\nshard_size: 4\n", "shard_size"),
    ("methods:\n  km: {kind: kmeans, k: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], seed: ["
     + ", ".join(map(str, range(1000))) + "], n_init: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n",
     "methods.km"),
]


def e2e_folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        (images / f"i{k}.png").write_bytes(encode(blobs_image(k), ".png"))
    return images


@pytest.mark.e2e
@pytest.mark.parametrize("text, key", E2E_MISTAKES)
def test_snakemake_stops_before_any_job(tmp_path, text, key):
    images = e2e_folder(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input_dir: {images}\n" + text)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_snakemake(work, "--configfile", cfg, check=False)
    assert proc.returncode != 0
    assert f"segpipe: config key '{key}': " in proc.stderr
    # One line: neither a traceback nor Snakemake's list of the exception's frames.
    assert "Traceback" not in proc.stdout + proc.stderr and 'File "' not in proc.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("text, key", E2E_MISTAKES)
def test_segpipe_run_stops_before_any_job(tmp_path, text, key):
    images = e2e_folder(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "segpipe.cli", "run", str(images), "--config",
                           str(cfg), "--out", str(out), "-j", "1"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"segpipe: config key '{key}': ")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (out / "results").exists() and not (out / "segpipe-config.yaml").exists()


@pytest.mark.e2e
def test_whole_number_floats_run_with_every_row_ok(tmp_path):
    images = e2e_folder(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("shard_size: 2.0\nmethods:\n  km: {kind: kmeans, k: 3.0}\n"
                   "  sweep: {kind: kmeans, k: [2.0, 4.0], sample_size: 100.0}\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "segpipe.cli", "run", str(images), "--config",
                           str(cfg), "--out", str(out), "-j", "2"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert sorted(set(metrics["method"])) == ["km", "sweep_k2", "sweep_k4"]
    assert len(metrics) == 3 * 3 and (metrics["status"] == "ok").all(), metrics["error"]
    # k clusters are labels 0..k-1, and n_labels counts the non-zero ones
    assert metrics.groupby("method")["n_labels"].max().to_dict() == {
        "km": 2, "sweep_k2": 1, "sweep_k4": 3}
    # shard_size 2: three images in two shards per method
    shards = sorted(p.name for p in (out / "results/metrics/km").glob("*.parquet"))
    assert shards == ["000000.parquet", "000001.parquet"]
