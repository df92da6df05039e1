"""config/README.md is generated from the config schema and must match it."""

import copy
import re
from pathlib import Path

import pytest

from segpipe import config_reference
from segpipe.config_reference import builtin_kinds, default_text, render, value_text

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = config_reference.read_schema(ROOT / config_reference.SCHEMA_PATH)
REFERENCE = ROOT / config_reference.REFERENCE_PATH


def test_reference_is_not_stale():
    expected = render(SCHEMA, builtin_kinds(SCHEMA))
    current = REFERENCE.read_text(encoding="utf-8")
    assert current == expected, (
        "config/README.md differs from the schema: run `make docs` "
        "(python -m segpipe.config_reference) and commit it")


def test_every_top_level_key_has_a_section():
    text = REFERENCE.read_text(encoding="utf-8")
    for key in SCHEMA["properties"]:
        assert f"\n### `{key}`\n" in text, key
        assert f"| [`{key}`](#{key}) |" in text, key


def test_every_kind_and_setting_is_documented():
    text = REFERENCE.read_text(encoding="utf-8")
    kinds = [spec.kind for spec in builtin_kinds(SCHEMA)]
    assert {"threshold", "multi_threshold", "edges", "kmeans", "watershed", "superpixels",
            "region_growing", "maskrcnn"} <= set(kinds)
    # The last kind's section ends where the next part (## Training models) begins.
    kinds_part = text.split("\n## Method kinds\n", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"\n### `kind: ", kinds_part)[1:]
    assert [s.split("`", 1)[0] for s in sections] == kinds
    for kind, section in zip(kinds, sections):
        for setting in SCHEMA["$defs"][kind]["properties"]:
            if setting != "kind":
                assert f"\n| `{setting}` |" in section, (kind, setting)


def _training_part(text):
    return text.split("\n## Training models\n", 1)[1].split("\n## ", 1)[0]


def test_every_training_setting_is_documented():
    text = REFERENCE.read_text(encoding="utf-8")
    assert "| [`train`](#train) | a mapping of model names to their settings: " \
           "[Training models](#training-models) | `{}` |" in text
    part = _training_part(text)
    model = SCHEMA["$defs"]["train_model"]
    rows = [line.split(" | ", 1)[0] for line in part.splitlines() if line.startswith("| `")]
    expected = []
    for setting, node in model["properties"].items():
        expected.append(f"| `{setting}`")
        expected += [f"| `{setting}.{sub}`" for sub in node.get("properties", {})]
    assert rows == expected
    assert {"| `augment.flip`", "| `augment.rotate90`", "| `augment.scale`",
            "| `augment.intensity`"} <= set(rows)
    for setting in model["required"]:
        assert f"\n| `{setting}` | a non-empty string | none (required) |" in part
    # The reading keys refer to the top-level ones: their values, the run's as defaults,
    # and their own descriptions rather than the top-level ones.
    assert ("\n| `z` | `null`, an integer, `max`, `mean` or `all` | the run's [`z`](#z) | "
            "As the top-level z;") in part
    assert "| the run's [`intensity_range`](#intensity_range) | As the top-level" in part
    assert "| the run's [`channel`](#channel) | As the top-level channel;" in part


def test_a_changed_training_default_shows():
    schema = copy.deepcopy(SCHEMA)
    model = schema["$defs"]["train_model"]
    model["properties"]["epochs"]["default"] = 77
    model["properties"]["augment"]["properties"]["scale"]["default"] = 0.5
    model["properties"]["z"]["default"] = "max"  # its own default beats the run's
    part = _training_part(render(schema, builtin_kinds(schema)))
    assert "\n| `epochs` | an integer ≥ 1 | `77` | Passes over the training images. |" in part
    assert "\n| `augment.scale` | a number in 0..0.9 | `0.5` | Scale jitter:" in part
    assert "\n| `z` | `null`, an integer, `max`, `mean` or `all` | `max` |" in part
    assert "the run's [`z`]" not in part


def test_weights_of_maskrcnn_name_a_trained_model():
    text = REFERENCE.read_text(encoding="utf-8")
    assert "\n| `weights` | a non-empty string or `{trained: NAME}` | `DEFAULT` |" in text
    # Without the names' pattern the mapping is described by its keys.
    weights = SCHEMA["$defs"]["maskrcnn"]["properties"]["weights"]
    assert value_text(weights, {}) == "a non-empty string or a mapping with `trained`"


def test_defaults_and_descriptions_come_from_the_schema():
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["shard_size"]["default"] = 99
    schema["properties"]["shard_size"]["description"] = "A changed description."
    schema["$defs"]["kmeans"]["properties"]["k"]["default"] = 7
    text = render(schema, builtin_kinds(schema))
    assert "| [`shard_size`](#shard_size) | an integer ≥ 1 or `auto` | `99` |" in text
    assert "### `shard_size`\n\nA changed description.\n" in text
    assert "\n| `k` | an integer in 2..255 | `7` | Number of clusters" in text


def test_a_kind_outside_the_schema_is_left_out():
    class Spec:
        kind, labels, colour, runner = "toy", "foreground", "grey", "image"

    schema = copy.deepcopy(SCHEMA)
    kinds = builtin_kinds(schema)
    assert "toy" not in [spec.kind for spec in kinds]
    schema["$defs"]["toy"] = {"description": "A toy kind.", "properties": {
        "kind": {"const": "toy"}, "level": {"type": "number", "minimum": 0, "maximum": 1,
                                            "default": 0.5, "description": "How bright."}}}
    text = render(schema, [*kinds, Spec()])
    assert "### `kind: toy`\n\nA toy kind.\n" in text
    assert "| `level` | a number in 0..1 | `0.5` | How bright. |" in text


@pytest.mark.parametrize(("node", "words"), [
    ({"type": "integer", "minimum": 1}, "an integer ≥ 1"),
    ({"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "a number > 0 and ≤ 1"),
    ({"type": "integer", "minimum": 32, "multipleOf": 32}, "an integer ≥ 32, a multiple of 32"),
    ({"type": ["string", "null"]}, "a string or `null`"),
    ({"enum": ["png", "tiff"]}, "`png` or `tiff`"),
    ({"oneOf": [{"enum": ["otsu", "mean"]}, {"type": "number"}]}, "`otsu`, `mean` or a number"),
    ({"type": "array", "items": {"type": "string", "minLength": 1}},
     "a list of non-empty strings"),
    ({"type": "string", "pattern": "^a|b$"}, "a string matching `^a|b$`"),
    ({"oneOf": [{"type": "null"}, {"type": "array", "minItems": 1,
                                   "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}]},
     "`null` or a list of one or more integers or strings"),
])
def test_value_text(node, words):
    assert value_text(node, {}) == words


def test_a_reference_takes_the_block_and_keeps_its_own_default():
    schema = {"$defs": {"side": {"enum": ["bright", "dark"], "description": "Which side."}}}
    node = {"$ref": "#/$defs/side", "default": "dark"}
    assert value_text(node, schema) == "`bright` or `dark`"
    assert default_text(node, schema) == "`dark`"
    assert default_text({"type": "integer"}, {}, required=True) == "none (required)"


def test_a_reference_to_a_top_level_key_takes_the_runs_value():
    schema = {"properties": {"z": {"enum": ["max", "mean"], "default": "max",
                                   "description": "The run's planes."}}}
    node = {"$ref": "#/properties/z", "description": "The model's planes."}
    assert value_text(node, schema) == "`max` or `mean`"
    assert default_text(node, schema) == "the run's [`z`](#z)"
    assert default_text({**node, "default": "mean"}, schema) == "`mean`"
    table = "\n".join(config_reference._settings_table({"z": node}, schema))
    assert "| `z` | `max` or `mean` | the run's [`z`](#z) | The model's planes. |" in table
    with pytest.raises(ValueError, match="'#/properties/t'"):
        value_text({"$ref": "#/properties/t"}, schema)


def test_main_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "README.md"
    schema = ROOT / config_reference.SCHEMA_PATH
    assert config_reference.main(["--schema", str(schema), "--out", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert config_reference.main(["--schema", str(schema), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")
    assert config_reference.main(["--schema", str(schema), "--out", str(out), "--check"]) == 0
