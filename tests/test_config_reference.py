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
    sections = re.split(r"\n### `kind: ", text)[1:]
    assert [s.split("`", 1)[0] for s in sections] == kinds
    for kind, section in zip(kinds, sections):
        for setting in SCHEMA["$defs"][kind]["properties"]:
            if setting != "kind":
                assert f"\n| `{setting}` |" in section, (kind, setting)


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
    defs = {"side": {"enum": ["bright", "dark"], "description": "Which side."}}
    node = {"$ref": "#/$defs/side", "default": "dark"}
    assert value_text(node, defs) == "`bright` or `dark`"
    assert default_text(node, defs) == "`dark`"
    assert default_text({"type": "integer"}, {}, required=True) == "none (required)"


def test_main_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "README.md"
    schema = ROOT / config_reference.SCHEMA_PATH
    assert config_reference.main(["--schema", str(schema), "--out", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert config_reference.main(["--schema", str(schema), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")
    assert config_reference.main(["--schema", str(schema), "--out", str(out), "--check"]) == 0
