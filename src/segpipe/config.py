"""Validating and resolving the workflow config, before any job runs.

The JSON schema (``workflow/schemas/config.schema.yaml``) is the one place where keys,
types and defaults are written down. This module checks a config against it with error
messages that name the key (``config key 'methods.otsu.method': 'otsuu' is not one of
[...]``), fills in defaults, and runs the checks a schema cannot express.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from segpipe.errors import ConfigError, UnknownKeyError
from segpipe.methods import get_method

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

METHOD_NAME = r"[A-Za-z][A-Za-z0-9_]*"


def load_schema(path: str | os.PathLike) -> dict[str, Any]:
    """Read the config schema (YAML) and complete it from the method registry.

    The ``kind`` enum and the ``allOf`` that sends each kind to its settings block are
    generated for every registered kind, built-in or from outside the package. A kind's
    settings block is ``$defs.{kind}`` in the YAML, or, for a kind registered from
    outside, built from ``MethodSpec.schema``.

    Raises
    ------
    ValueError
        If a registered kind has no settings block in either place.
    """
    from segpipe.methods import REGISTRY

    with open(path) as fh:
        schema = yaml.safe_load(fh)
    method = schema["$defs"]["method"]
    for kind, spec in REGISTRY.items():
        if kind not in schema["$defs"]:
            if spec.schema is None:
                raise ValueError(f"method kind {kind!r} has no settings block: add $defs.{kind} "
                                 f"to {path} or give its MethodSpec a schema")
            schema["$defs"][kind] = {
                "description": spec.summary,
                "type": "object",
                "additionalProperties": False,
                "properties": {"kind": {"const": kind}, **copy.deepcopy(spec.schema)},
            }
        method["properties"]["kind"]["enum"].append(kind)
        method["allOf"].append({"if": {"properties": {"kind": {"const": kind}}},
                                "then": {"$ref": f"#/$defs/{kind}"}})
    return schema


def _error_of(error: ValidationError) -> ConfigError:
    """The ConfigError for one schema violation: its key and what is wrong with it."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and error.instance:
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        if extra:
            return UnknownKeyError(".".join(parts), str(extra[0]), allowed)
    message = error.message
    if error.validator in ("oneOf", "anyOf") and error.context:
        # "not valid under any of the given schemas" says nothing useful alone
        message += ": " + "; ".join(sorted({e.message for e in error.context}))
    return ConfigError(".".join(parts) or "(top level)", message)


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise ConfigError for the most relevant schema violation in ``config``.

    Parameters
    ----------
    config : dict
    schema : dict
        The loaded JSON schema.

    Raises
    ------
    ConfigError
        Naming the key (dotted path) and what is wrong with it; an `UnknownKeyError`
        for a key not allowed where it stands, suggesting the nearest allowed one.
    """
    validator = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise _error_of(error)


def coerce_strings(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Turn strings into numbers, booleans or null where the schema wants those.

    Snakemake's ``--config key=value`` turns only plain numbers and ``True``/``False``
    into values; ``report=true`` and every number inside a mapping
    (``methods={km: {kind: kmeans, k: 3}}``) arrive as strings and would fail as the
    wrong type. Only a string the schema rejects is read again (:func:`_scalar`), and
    kept only if that gives a value of another type: a folder named ``2024`` stays a
    string.
    """
    validator = Draft202012Validator(schema)
    for _ in range(10_000):  # each pass fixes at least one value; a bound, not a loop forever
        for error in validator.iter_errors(config):
            if _coerce_at(config, error):
                break
        else:
            return config
    return config


def _scalar(text: str) -> bool | int | float | str | None:
    """``text`` as a boolean (true/false), null, integer or float; else ``text`` itself.
    Not YAML 1.1's yes/no/on/off: ``hash_images: yes`` stays a mistake to report."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _coerce_at(config: dict[str, Any], error: ValidationError) -> bool:
    for err in [error, *(error.context or ())]:
        if not isinstance(err.instance, str) or err.validator not in ("type", "enum", "const"):
            continue
        value = _scalar(err.instance)
        if isinstance(value, str):
            continue
        *parents, last = err.absolute_path
        target = config
        for part in parents:
            target = target[part]
        if target[last] != err.instance:
            continue
        target[last] = value
        return True
    return False


def method_defaults(schema: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Defaults of one method kind's settings, read from the schema's ``$defs``."""
    props = schema["$defs"][kind]["properties"]
    defaults = {}
    for key, spec in props.items():
        if "default" not in spec and "$ref" in spec:  # a shared block ("#/$defs/name")
            spec = schema["$defs"].get(spec["$ref"].rsplit("/", 1)[-1], {})
        if "default" in spec:
            defaults[key] = copy.deepcopy(spec["default"])
    return defaults


def replace_methods_from(config: dict[str, Any], configfiles: Iterable[str | os.PathLike] | None,
                         command_line: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make the user's ``methods`` replace the default ones instead of merging.

    Snakemake merges config files key by key, so a user who lists two methods would get
    those two plus every default method. The last given file that has ``methods`` wins,
    and ``--config methods=...`` (``command_line``, applied last) over all files.
    """
    for path in configfiles or ():
        with open(path) as fh:
            user = yaml.safe_load(fh) or {}
        if isinstance(user, dict) and "methods" in user:
            config["methods"] = copy.deepcopy(user["methods"])
    if command_line and "methods" in command_line:
        config["methods"] = copy.deepcopy(command_line["methods"])
    return config


def _is_sweep(value: object, spec: Mapping[str, Any]) -> bool:
    """A list sweeps a setting, except a list that is the setting's own value
    (``thresholds: [0.2, 0.6]``); a list of such lists sweeps those."""
    if not isinstance(value, list) or not value:
        return False
    if spec.get("type") == "array":
        return all(isinstance(v, list) for v in value)
    return True


def _token(value: object) -> str:
    """A setting's value as part of a method name: ``0.5`` -> ``0p5``, ``-1`` -> ``m1``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "_".join(_token(v) for v in value)
    text = str(value).replace(".", "p").replace("-", "m")
    return re.sub(r"[^A-Za-z0-9]+", "_", text)


def expand_sweeps(methods: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Expand list-valued settings into one method per value (several lists: their product).

    ``{"km": {"kind": "kmeans", "k": [3, 5]}}`` becomes ``km_k3`` and ``km_k5``, each with
    its own rows, masks and aggregates. Names are the base name, then ``_<key><value>``
    for each swept key in the order written.

    Examples
    --------
    >>> schema = {"$defs": {"kmeans": {"properties": {"k": {"type": "integer"}}}}}
    >>> sorted(expand_sweeps({"km": {"kind": "kmeans", "k": [3, 5], "seed": [0, 1]}}, schema))
    ['km_k3_seed0', 'km_k3_seed1', 'km_k5_seed0', 'km_k5_seed1']

    Raises
    ------
    ConfigError
        If an expanded name is already the name of another method.
    """
    out = {}
    for name, settings in methods.items():
        kind = settings.get("kind") if isinstance(settings, dict) else None
        props = schema["$defs"].get(kind, {}).get("properties", {}) if isinstance(kind, str) else {}
        swept = [k for k, v in (settings or {}).items() if k != "kind" and _is_sweep(v, props.get(k, {}))]
        if not swept:
            out[name] = settings
            continue
        for combo in itertools.product(*(settings[k] for k in swept)):
            new_name = name + "".join(f"_{k}{_token(v)}" for k, v in zip(swept, combo))
            if new_name in methods or new_name in out:
                raise ConfigError(f"methods.{name}", f"the sweep's method {new_name!r} exists already")
            out[new_name] = {**settings, **dict(zip(swept, combo))}
    return out


def resolve_config(config: dict[str, Any], schema: Mapping[str, Any], *,
                   configfiles: Iterable[str | os.PathLike] | None = (),
                   command_line: Mapping[str, Any] | None = None,
                   generated_input_dir: str | None = None) -> dict[str, Any]:
    """Validate ``config`` and return a new dict with every default filled in.

    Parameters
    ----------
    config : dict
        As Snakemake loaded it (defaults file merged with user files and --config).
    schema : dict
    configfiles : sequence of path
        The files given with ``--configfile``; their ``methods`` replace the defaults'.
    command_line : dict, optional
        What ``--config`` gave; its ``methods`` replace those of every file.
    generated_input_dir : str, optional
        An ``input_dir`` that a rule of the workflow writes (the sample images): it need
        not exist yet.

    Raises
    ------
    ConfigError
    """
    config = replace_methods_from(copy.deepcopy(config), configfiles, command_line)
    coerce_strings(config, schema)
    if isinstance(config.get("methods"), dict):
        config["methods"] = expand_sweeps(config["methods"], schema)
        coerce_strings(config, schema)  # inside sweeps, which the schema sees only now
    validate_config(config, schema)
    for key, spec in schema["properties"].items():
        if key not in config and "default" in spec:
            config[key] = copy.deepcopy(spec["default"])
    methods = {}
    for name, settings in config["methods"].items():
        # The schema's pattern is searched with Python's re, where "$" also matches
        # before a final newline: "otsu\n" would pass it.
        if not re.fullmatch(METHOD_NAME, name):
            raise ConfigError(f"methods.{name!r}",
                              "a method name is a letter, then letters, digits or _")
        full = {**method_defaults(schema, settings["kind"]), **settings}
        spec = get_method(full["kind"])
        if spec.check is not None:
            spec.check(name, full)
        methods[name] = full
    config["methods"] = methods
    if config["input_dir"] != generated_input_dir:
        check_input_dir(config["input_dir"])
    range_ = config["intensity_range"]
    if isinstance(range_, list) and not range_[0] < range_[1]:
        raise ConfigError("intensity_range", f"[lo, hi] needs lo < hi, got {range_}")
    if isinstance(range_, dict) and not range_["percentile"][0] < range_["percentile"][1]:
        raise ConfigError("intensity_range.percentile",
                          f"needs the lower percentile first, got {range_['percentile']}")
    pattern = config["ground_truth_pattern"]
    if pattern is not None:
        check_truth_pattern(pattern)
    truth = config["ground_truth_dir"]
    if truth is not None and not Path(truth).exists():
        raise ConfigError("ground_truth_dir", f"{truth!r} does not exist")
    return config


def check_truth_pattern(pattern: str) -> None:
    """Fail early on a ``ground_truth_pattern`` with an unknown or malformed placeholder."""
    import string

    from segpipe.ground_truth import PLACEHOLDERS

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as err:
        raise ConfigError("ground_truth_pattern", f"{pattern!r}: {err}") from None
    for field in fields:
        if field not in PLACEHOLDERS:
            raise ConfigError("ground_truth_pattern",
                              f"unknown placeholder {{{field}}} in {pattern!r}; known: "
                              + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))


def check_input_dir(input_dir: str | os.PathLike) -> None:
    """Fail early if ``input_dir`` is missing, not a folder, or holds no files."""
    path = Path(input_dir)
    if not path.exists():
        raise ConfigError("input_dir", f"folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise ConfigError("input_dir", f"{str(path)!r} is not a folder")
    from segpipe.manifest import iter_files

    if next(iter_files(path), None) is None:
        raise ConfigError("input_dir", f"folder {str(path)!r} holds no files")



def compose_run_config(defaults: str | os.PathLike, schema: str | os.PathLike, *,
                       input_dir: str | os.PathLike, config_file: str | os.PathLike | None = None,
                       methods: str | None = None) -> dict[str, Any]:
    """The config of a ``segpipe run``: the default config file, a user's file (its
    ``methods`` replace the defaults', as with ``--configfile``), the input folder, and a
    selection of methods; validated against ``schema`` (a path).

    Parameters
    ----------
    defaults : path
        The workflow's ``config/config.yaml``.
    input_dir : path
        Made absolute, as is ``ground_truth_dir``, so the record holds in any folder.
    config_file : path, optional
    methods : str, optional
        Comma-separated names: methods of the config, or kinds run with their defaults.

    Raises
    ------
    segpipe.errors.RunConfigError
        For an unreadable or invalid config file or an unknown method name.
    ConfigError
        For an invalid config (the key named).
    """
    from segpipe.errors import RunConfigError
    from segpipe.methods import REGISTRY

    config = yaml.safe_load(Path(defaults).read_text())
    if config_file is not None:
        try:
            user = yaml.safe_load(Path(config_file).read_text()) or {}
        except OSError as err:
            raise RunConfigError(f"cannot read --config {config_file}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise RunConfigError(f"--config {config_file}: not valid YAML ({_yaml_where(err)})") from None
        if not isinstance(user, dict):
            raise RunConfigError(f"--config {config_file}: not a mapping of config keys")
        config.update({k: v for k, v in user.items() if k != "methods"})
        if "methods" in user:
            config["methods"] = copy.deepcopy(user["methods"])
    config["input_dir"] = str(Path(input_dir).resolve())
    if methods:
        chosen = {}
        for name in (m.strip() for m in methods.split(",") if m.strip()):
            if name in config["methods"]:
                chosen[name] = config["methods"][name]
            elif name in REGISTRY:
                chosen[name] = {"kind": name}
            else:
                raise RunConfigError(
                    f"--methods: {name!r} is neither a method of the config "
                    f"({', '.join(sorted(config['methods']))}) nor a kind "
                    f"({', '.join(sorted(REGISTRY))})")
        config["methods"] = chosen
    if config.get("ground_truth_dir"):
        config["ground_truth_dir"] = str(Path(config["ground_truth_dir"]).resolve())
    resolve_config(copy.deepcopy(config), load_schema(schema))
    return config


def _yaml_where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
