import inspect

import pytest

from segpipe.config import load_schema, method_defaults, resolve_config
from segpipe.errors import ConfigError, UnknownKeyError
from segpipe.methods import REGISTRY

from conftest import ROOT

SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")


def resolve(config, **kw):
    return resolve_config(config, SCHEMA, **kw)


@pytest.fixture
def base(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"x")
    return {"input_dir": str(tmp_path / "in"), "methods": {"otsu": {"kind": "threshold"}}}


def test_defaults_are_filled(base):
    config = resolve(base)
    assert config["shard_size"] == "auto"
    assert config["ground_truth_dir"] is None
    assert config["methods"]["otsu"] == {"kind": "threshold", "method": "otsu", "foreground": "bright"}


def test_the_default_config_is_valid():
    import yaml

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    resolved = resolve(config, generated_input_dir=config["input_dir"])
    assert {s["kind"] for s in resolved["methods"].values()} <= set(REGISTRY)


def test_the_schema_knows_exactly_the_registered_kinds():
    method = SCHEMA["$defs"]["method"]
    assert set(method["properties"]["kind"]["enum"]) == set(REGISTRY)
    dispatched = {rule["if"]["properties"]["kind"]["const"]: rule["then"]["$ref"]
                  for rule in method["allOf"]}
    assert dispatched == {kind: f"#/$defs/{kind}" for kind in REGISTRY}
    for kind in REGISTRY:
        assert SCHEMA["$defs"][kind]["properties"]["kind"] == {"const": kind}


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_schema_defaults_match_the_functions(kind):
    """The schema is where defaults are documented; the functions must agree with it."""
    signature = inspect.signature(REGISTRY[kind].segment)
    for key, default in method_defaults(SCHEMA, kind).items():
        assert signature.parameters[key].default == default, key
    # kind and tiles are the runner's, not the function's.
    settings = set(SCHEMA["$defs"][kind]["properties"]) - {"kind", "tiles"}
    assert settings == set(list(signature.parameters)[1:])


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"shard_size": 0}, "shard_size", "less than the minimum"),
        ({"shard_size": "ten"}, "shard_size", "not of type 'integer'"),
        ({"shard_sise": 3}, "shard_sise", "unknown key"),
        ({"methods": {}}, "methods", "should be non-empty"),
        ({"methods": {"a/b": {"kind": "threshold"}}}, "methods", "does not match"),
        ({"methods": {"m": {"kind": "blobs"}}}, "methods.m.kind", "is not one of"),
        ({"methods": {"m": {"kind": "threshold", "foreground": "light"}}}, "methods.m.foreground", "is not one of"),
        ({"methods": {"m": {"kind": "watershed", "markers": "peaks"}}}, "methods.m.markers", "is not one of"),
        ({"methods": {"m": {"kind": "watershed", "min_distance": 0}}}, "methods.m.min_distance", "less than the minimum"),
        ({"methods": {"m": {"kind": "watershed", "threshold": 1.5}}}, "methods.m.threshold", "greater than the maximum"),
        ({"methods": {"m": {"kind": "superpixels", "algorithm": "quickshift"}}}, "methods.m.algorithm", "is not one of"),
        ({"methods": {"m": {"kind": "superpixels", "n_segments": 0}}}, "methods.m.n_segments", "less than the minimum"),
        ({"methods": {"m": {"kind": "region_growing", "tolerance": 0}}}, "methods.m.tolerance", "less than or equal to the minimum"),
        ({"measure_objects": "no"}, "measure_objects", "not of type 'boolean'"),
        ({"include": "*.tif"}, "include", "not of type 'array', 'null'"),
        ({"exclude": [""]}, "exclude.0", "should be non-empty"),
        ({"channel": 1.5}, "channel", "is not valid"),
        ({"z": "sum"}, "z", "is not valid"),
        ({"intensity_range": [5, 1]}, "intensity_range", "lo < hi"),
        ({"intensity_range": {"percentile": [99, 1]}}, "intensity_range.percentile", "lower percentile first"),
        ({"intensity_range": "auto"}, "intensity_range", "is not valid"),
        ({"mask_format": "jpg"}, "mask_format", "is not one of"),
        ({"ground_truth_pattern": "{base}_masks.tif"}, "ground_truth_pattern", r"unknown placeholder \{base\}"),
        ({"ground_truth_pattern": "{stem"}, "ground_truth_pattern", "expected '}'"),
        ({"methods": {"m": {"method": "otsu"}}}, "methods.m", "'kind' is a required property"),
        ({"methods": {"m": {"kind": "threshold", "method": "otsuu"}}}, "methods.m.method", "'otsuu' is not one of"),
        ({"methods": {"m": {"kind": "threshold", "thresh": 1}}}, "methods.m.thresh", "unknown key"),
        ({"methods": {"m": {"kind": "threshold", "method": "value"}}}, "methods.m.value", "needs a 'value'"),
        ({"methods": {"m": {"kind": "threshold", "value": 0.3}}}, "methods.m.value", "only used with method 'value'"),
        ({"methods": {"m": {"kind": "threshold", "method": "value", "value": 2}}}, "methods.m.value", "greater than the maximum"),
        ({"methods": {"m": {"kind": "multi_threshold"}}}, "methods.m", "exactly one of"),
        ({"methods": {"m": {"kind": "multi_threshold", "thresholds": [0.5, 0.2]}}}, "methods.m.thresholds", "must rise strictly"),
        ({"methods": {"m": {"kind": "edges", "operator": "prewitt"}}}, "methods.m.operator", "is not one of"),
        ({"methods": {"m": {"kind": "kmeans", "k": 1}}}, "methods.m.k", "less than the minimum"),
        ({"methods": {"m": {"kind": "kmeans", "k": 2.5}}}, "methods.m.k", "not of type 'integer'"),
        ({"methods": {"m": {"kind": "maskrcnn", "amp_dtype": "float8"}}}, "methods.m.amp_dtype", "is not one of"),
        ({"methods": {"m": {"kind": "maskrcnn", "canvas_step": 48}}}, "methods.m.canvas_step", "not a multiple of 32"),
        ({"methods": {"m": {"kind": "maskrcnn", "workers": -1}}}, "methods.m.workers", "less than the minimum"),
        ({"methods": {"m": {"kind": "maskrcnn", "writers": "many"}}}, "methods.m.writers", "is not valid"),
        ({"methods": {"otsu\n": {"kind": "threshold"}}}, "methods.'otsu\\n'", "a method name is"),
        ({"max_image_pixels": 0}, "max_image_pixels", "less than the minimum"),
        ({"hash_images": "yes"}, "hash_images", "not of type 'boolean'"),
    ],
)
def test_mistakes_name_the_key(base, change, key, words):
    with pytest.raises(ConfigError, match=words) as info:
        resolve({**base, **change})
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize(
    "change, key, suggestion",
    [
        ({"shard_szie": 3}, "shard_szie", "shard_size"),
        ({"Shard_Size": 3}, "Shard_Size", "shard_size"),  # case is ignored
        ({"methods": {"m": {"kind": "multi_threshold", "clases": 3}}}, "methods.m.clases",
         "classes"),
        ({"methods": {"m": {"kind": "watershed", "min_distanse": 3}}}, "methods.m.min_distanse",
         "min_distance"),
    ],
)
def test_an_unknown_key_suggests_the_nearest_allowed_one(base, change, key, suggestion):
    with pytest.raises(UnknownKeyError) as info:
        resolve({**base, **change})
    assert info.value.key == key and info.value.suggestion == suggestion
    assert f"config key '{key}': unknown key (did you mean '{suggestion}'?); allowed here: [" in (
        str(info.value))
    assert f"'{suggestion}'" in str(info.value).split("allowed here:")[1]


def test_an_unknown_key_far_from_every_allowed_one_gets_no_suggestion(base):
    with pytest.raises(UnknownKeyError) as info:
        resolve({**base, "methods": {"m": {"kind": "kmeans", "colour_space": "lab"}}})
    assert info.value.key == "methods.m.colour_space" and info.value.suggestion is None
    assert "did you mean" not in str(info.value)
    assert str(info.value).startswith(
        "config key 'methods.m.colour_space': unknown key; allowed here: ['k', 'kind', ")
    assert isinstance(info.value, ConfigError)


def test_input_dir_missing_or_empty(tmp_path, base):
    with pytest.raises(ConfigError, match="does not exist") as info:
        resolve({**base, "input_dir": str(tmp_path / "nope")})
    assert info.value.key == "input_dir"
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no files"):
        resolve({**base, "input_dir": str(tmp_path / "empty")})


def test_generated_input_dir_need_not_exist(base):
    config = resolve({**base, "input_dir": "resources/x"}, generated_input_dir="resources/x")
    assert config["input_dir"] == "resources/x"


def test_configfile_methods_replace_the_defaults(tmp_path, base):
    merged = {**base, "methods": {**base["methods"], "km": {"kind": "kmeans"}}}
    user = tmp_path / "user.yaml"
    user.write_text("methods:\n  only:\n    kind: edges\n")
    config = resolve(merged, configfiles=[user])
    assert list(config["methods"]) == ["only"]
    # a user file without methods keeps the ones configured
    other = tmp_path / "other.yaml"
    other.write_text("shard_size: 5\n")
    assert set(resolve(merged, configfiles=[other])["methods"]) == {"otsu", "km"}
    # --config methods=... (applied last by Snakemake) replaces them too, files included
    given = {"km": {"kind": "kmeans", "k": "4"}}
    config = resolve({**merged, "methods": {**merged["methods"], **given}},
                     configfiles=[user], command_line={"methods": given})
    assert list(config["methods"]) == ["km"] and config["methods"]["km"]["k"] == 4


def test_sweeps_expand_into_one_method_per_value(base):
    config = resolve({**base, "methods": {
        "km": {"kind": "kmeans", "k": [3, 5, 8]},
        "band": {"kind": "multi_threshold", "thresholds": [0.2, 0.6]},
        "bands": {"kind": "multi_threshold", "thresholds": [[0.3], [0.2, 0.7]]},
        "edge": {"kind": "edges", "operator": ["sobel", "laplace"], "threshold": [0.1, "otsu"]},
    }})
    names = set(config["methods"])
    assert {"km_k3", "km_k5", "km_k8"} <= names and "km" not in names
    assert config["methods"]["km_k5"] == {"kind": "kmeans", "k": 5, "seed": 0,
                                          "sample_size": 20000, "n_init": 3}
    # a list that is the setting's own value is not a sweep; a list of lists is
    assert config["methods"]["band"]["thresholds"] == [0.2, 0.6]
    assert config["methods"]["bands_thresholds0p2_0p7"]["thresholds"] == [0.2, 0.7]
    assert {n for n in names if n.startswith("edge_")} == {
        "edge_operatorsobel_threshold0p1", "edge_operatorsobel_thresholdotsu",
        "edge_operatorlaplace_threshold0p1", "edge_operatorlaplace_thresholdotsu",
    }


def test_command_line_strings_are_read_where_the_schema_wants_numbers(base, tmp_path):
    # What `snakemake --config report=true 'methods={km: {kind: kmeans, k: [3, 5]}}'`
    # gives: plain strings, nested ones too.
    folder = tmp_path / "2024"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"x")
    config = resolve({**base, "input_dir": str(folder), "report": "true", "shard_size": "50",
                      "methods": {"km": {"kind": "kmeans", "k": ["3", "5"], "seed": "1"},
                                  "e": {"kind": "edges", "threshold": "0.25"},
                                  "t": {"kind": "threshold", "method": "otsu"}}})
    assert config["report"] is True and config["shard_size"] == 50
    assert config["methods"]["km_k3"]["k"] == 3 and config["methods"]["km_k5"]["seed"] == 1
    assert config["methods"]["e"]["threshold"] == 0.25
    assert config["methods"]["t"]["method"] == "otsu"
    assert config["input_dir"] == str(folder)  # a string where the schema wants one
    with pytest.raises(ConfigError, match="report"):
        resolve({**base, "report": "yes please"})


def test_sweep_values_are_validated_and_names_do_not_collide(base):
    with pytest.raises(ConfigError, match="less than the minimum") as info:
        resolve({**base, "methods": {"km": {"kind": "kmeans", "k": [3, 1]}}})
    assert info.value.key == "methods.km_k1.k"
    with pytest.raises(ConfigError, match="exists already") as info:
        resolve({**base, "methods": {"km": {"kind": "kmeans", "k": [3]},
                                     "km_k3": {"kind": "kmeans"}}})
    assert info.value.key == "methods.km"


def test_ground_truth_dir_must_exist(base, tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        resolve({**base, "ground_truth_dir": str(tmp_path / "nope")})
    assert info.value.key == "ground_truth_dir"
    config = resolve({**base, "ground_truth_dir": str(tmp_path)})
    assert config["ground_truth_kind"] == "instances" and config["primary_metric"] == "iou"
