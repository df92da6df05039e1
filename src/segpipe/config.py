"""Validating and resolving the workflow config, before any job runs.

The JSON schema (``workflow/schemas/config.schema.yaml``) is the one place where keys,
types and defaults are written down. This module checks a config against it with error
messages that name the key (``config key 'methods.otsu.method': 'otsuu' is not one of
[...]``), fills in defaults, and runs the checks a schema cannot express: keys that are
strings and given once (:class:`StrictLoader`), numbers that are finite, integral floats
read as the integers they are, and at most :data:`MAX_METHODS` methods once sweeps expand.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from segpipe.errors import ConfigError, UnknownKeyError
from segpipe.methods import get_method

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

METHOD_NAME = r"[A-Za-z][A-Za-z0-9_]*"
# The most methods a config may give, sweeps expanded. Each method is a mask folder, a
# job per shard and rows in every table; past a thousand the run is a mistake more often
# than a plan (a sweep of a few long lists is 10^6 methods that would take minutes to
# expand and never finish planning).
MAX_METHODS = 1000


def _is_integer(checker: object, instance: object) -> bool:
    # python-jsonschema counts 3.0 as an integer; the methods would then get a float
    # (range(3.0) fails). Integral floats are turned into ints instead (_coerce_at).
    return isinstance(instance, int) and not isinstance(instance, bool)


# Draft 2020-12 with "integer" meaning a Python int: every check and coercion uses it.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping key given twice.

    Plain YAML loading keeps the last of two equal keys without a word, so a setting
    written twice silently loses its first value. Keys written after a merge (``<<:
    *defaults``) override the merged ones on purpose and are not duplicates.

    Raises
    ------
    ConfigError
        Naming the dotted key, the file and both lines: ``config key 'shard_size':
        given twice in my.yaml, at lines 3 and 7``.

    Examples
    --------
    >>> yaml.load("a: 1\\nb:\\n  c: 2\\n  c: 3\\n", Loader=StrictLoader)
    Traceback (most recent call last):
    ...
    segpipe.errors.ConfigError: config key 'b.c': given twice in <unicode string>, at lines 3 and 4
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique(node, (), set())
        return super().construct_document(node)

    def _check_unique(self, node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already checked (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique(item, (*path, str(index)), seen)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_unique(value_node, path, seen)
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    # Keys as loaded, so that 1 and 0x1, or a and "a", are the same key.
                    key = self.construct_object(key_node)
                    line = key_node.start_mark.line + 1
                    if key in lines:
                        raise ConfigError(".".join((*path, str(key))),
                                          f"given twice in {key_node.start_mark.name}, at "
                                          f"lines {lines[key]} and {line}")
                    lines[key] = line
                    self._check_unique(value_node, (*path, str(key)), seen)
                else:  # a list or mapping as a key: SafeLoader refuses it as unhashable
                    self._check_unique(value_node, path, seen)


def load_config_file(path: str | os.PathLike) -> Any:
    """A user's config file, read with :class:`StrictLoader`.

    Raises
    ------
    OSError
        If the file cannot be read.
    yaml.YAMLError
        If it is not YAML.
    ConfigError
        For a key given twice in one mapping.
    """
    with open(path) as fh:
        return yaml.load(fh, Loader=StrictLoader)  # a SafeLoader: no Python objects


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
        # Every kind may override the run's tiles; without its own, it takes the run's
        # (no default here, or method_defaults would fill one in).
        schema["$defs"][kind]["properties"].setdefault("tiles", {
            "$ref": "#/$defs/tiles",
            "description": "This method's own tiles setting (see the top-level tiles); "
                           "kinds that cannot be tiled segment whole images whatever it says.",
        })
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
    validator = _Validator(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise _error_of(error)


def coerce_values(config: dict[str, Any], schema: Mapping[str, Any], *,
                  strings: bool = True) -> dict[str, Any]:
    """Turn integral floats into integers, and strings into numbers, booleans or null,
    where the schema wants those; in place.

    A float the schema refuses as an integer becomes that integer if it is integral:
    ``k: 3.0`` is ``k: 3``, ``shard_size: 2.0`` is ``shard_size: 2``; ``3.5`` stays, and
    is refused. Snakemake's ``--config key=value`` turns only plain numbers and
    ``True``/``False`` into values; ``report=true`` and every number inside a mapping
    (``methods={km: {kind: kmeans, k: 3}}``) arrive as strings and would fail as the
    wrong type. Only a string the schema rejects is read again (:func:`_scalar`), and
    kept only if that gives a value of another type: a folder named ``2024`` stays a
    string.

    Parameters
    ----------
    config : dict
    schema : dict
    strings : bool
        Read strings again too; False turns only integral floats into integers.
    """
    validator = _Validator(schema)
    for _ in range(10_000):  # each pass fixes at least one value; a bound, not a loop forever
        fixed = [_coerce_at(config, error, strings=strings)
                 for error in list(validator.iter_errors(config))]
        if not any(fixed):
            return config
    return config


def _scalar(text: str) -> bool | int | float | str | None:
    """``text`` as a boolean (true/false), null, integer or finite float; else ``text``
    itself. Not YAML 1.1's yes/no/on/off: ``hash_images: yes`` stays a mistake to report,
    and neither are "nan" and "inf", which would pass every bound of the schema."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def _replacement(error: ValidationError, *, strings: bool) -> tuple[bool, Any]:
    """Whether the value of a failed check has a replacement of the type wanted, and
    which."""
    instance = error.instance
    if isinstance(instance, float) and instance.is_integer() and error.validator == "type":
        wanted = error.validator_value
        if "integer" in ([wanted] if isinstance(wanted, str) else wanted):
            return True, int(instance)
    if strings and isinstance(instance, str) and error.validator in ("type", "enum", "const"):
        value = _scalar(instance)
        if not isinstance(value, str):
            return True, value
    return False, None


def _coerce_at(config: dict[str, Any], error: ValidationError, *, strings: bool) -> bool:
    """Replace the value ``error`` (or one of the alternatives it failed) is about;
    whether it did."""
    for err in [error, *(error.context or ())]:
        found, value = _replacement(err, strings=strings)
        if not found or not err.absolute_path:
            continue
        *parents, last = err.absolute_path
        target = config
        for part in parents:
            target = target[part]
        # Not replaced already by another error about the same value in this pass.
        if type(target[last]) is not type(err.instance) or target[last] != err.instance:
            continue
        target[last] = value
        return True
    return False


def check_keys_and_numbers(value: Any, path: tuple[str, ...] = ()) -> None:
    """Refuse, anywhere in ``value``, a mapping key that is not a string and a number
    that is not finite, naming the key.

    A schema says neither: it sees keys as strings (a method named ``1`` would reach
    ``re.fullmatch`` as an int), and python-jsonschema lets NaN through every bound
    (``NaN < 0`` and ``NaN > 1`` are both false) and infinity past a one-sided one.

    Raises
    ------
    ConfigError
        ``config key 'methods.1': a method name must be a string ...``, ``config key
        'methods.m.value': nan is not a finite number ...``.

    Examples
    --------
    >>> check_keys_and_numbers({"methods": {"m": {"kind": "threshold", "value": 0.5}}})
    >>> check_keys_and_numbers({"intensity_range": [0, float("inf")]})
    Traceback (most recent call last):
    ...
    segpipe.errors.ConfigError: config key 'intensity_range.1': inf is not a finite number; NaN and infinities are refused
    """
    _check_keys_and_numbers(value, path, set())


def _check_keys_and_numbers(value: Any, path: tuple[str, ...], open_: set[int]) -> None:
    where = ".".join(path)
    if isinstance(value, dict | list):
        # A YAML alias inside its own anchor (a: &x [*x]) loads as a list that holds
        # itself; it would recurse forever, here and in the schema's checks.
        if id(value) in open_:
            raise ConfigError(where, "holds itself (a YAML alias inside its own anchor)")
        open_.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict) and not isinstance(key, str):
                what = ("a method name must be a string (a letter, then letters, digits "
                        "or _)" if path == ("methods",) else "a key must be a string")
                raise ConfigError(".".join((*path, str(key))),
                                  f"{what}, got {key!r} ({type(key).__name__}): YAML reads an "
                                  f"unquoted 1, 1.5, true, yes, no, on, off or null as a "
                                  f"value, not a name")
            _check_keys_and_numbers(item, (*path, str(key)), open_)
        open_.discard(id(value))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(where, f"{value} is not a finite number; NaN and infinities "
                                 f"are refused")


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

    Raises
    ------
    ConfigError
        For a key given twice in one mapping of a file (:class:`StrictLoader`).
    """
    for path in configfiles or ():
        # Snakemake has read these already, keeping the last of two equal keys; read
        # again strictly, a key given twice is refused here, before any job.
        user = load_config_file(path) or {}
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


def _sweep(settings: object, schema: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The swept keys of one method's settings, in the order written, and the settings'
    schema properties (none for an unknown kind, or settings that are not a mapping)."""
    if not isinstance(settings, dict):
        return [], {}
    kind = settings.get("kind")
    props = schema["$defs"].get(kind, {}).get("properties", {}) if isinstance(kind, str) else {}
    swept = [k for k, v in settings.items() if k != "kind" and _is_sweep(v, props.get(k, {}))]
    return swept, props


def _integral_values(values: list[Any], spec: Mapping[str, Any],
                     schema: Mapping[str, Any]) -> list[Any]:
    """A sweep's values with integral floats made integers where ``spec`` wants an
    integer, before they name methods: ``k: [3.0, 5.0]`` gives km_k3, not km_k3p0."""
    holder = {"values": copy.deepcopy(values)}
    coerce_values(holder, {"$defs": schema["$defs"], "type": "object",
                           "properties": {"values": {"type": "array", "items": spec}}},
                  strings=False)
    return holder["values"]


def expand_sweeps(methods: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Expand list-valued settings into one method per value (several lists: their product).

    ``{"km": {"kind": "kmeans", "k": [3, 5]}}`` becomes ``km_k3`` and ``km_k5``, each with
    its own rows, masks and aggregates. Names are the base name, then ``_<key><value>``
    for each swept key in the order written. Sizes are checked before anything is
    expanded: at most :data:`MAX_METHODS` methods in all.

    Examples
    --------
    >>> schema = {"$defs": {"kmeans": {"properties": {"k": {"type": "integer"}}}}}
    >>> sorted(expand_sweeps({"km": {"kind": "kmeans", "k": [3, 5], "seed": [0, 1]}}, schema))
    ['km_k3_seed0', 'km_k3_seed1', 'km_k5_seed0', 'km_k5_seed1']
    >>> sorted(expand_sweeps({"km": {"kind": "kmeans", "k": [3.0, 5.0]}}, schema))
    ['km_k3', 'km_k5']

    Raises
    ------
    ConfigError
        If a sweep gives more than :data:`MAX_METHODS` methods (naming the method and the
        count), all methods together do, or an expanded name is already the name of
        another method.
    """
    sweeps = {name: _sweep(settings, schema) for name, settings in methods.items()}
    total = 0
    for name, (swept, _) in sweeps.items():
        sizes = [len(methods[name][k]) for k in swept]
        count = math.prod(sizes)
        if count > MAX_METHODS:
            lists = " x ".join(f"{size} {key}" for size, key in zip(sizes, swept))
            raise ConfigError(f"methods.{name}",
                              f"the sweep gives {count:,} methods ({lists}); a config may "
                              f"give at most {MAX_METHODS:,}")
        total += count
    if total > MAX_METHODS:
        raise ConfigError("methods", f"{total:,} methods once the sweeps expand; a config "
                                     f"may give at most {MAX_METHODS:,}")
    out = {}
    for name, settings in methods.items():
        swept, props = sweeps[name]
        if not swept:
            out[name] = settings
            continue
        values = [_integral_values(settings[k], props.get(k, {}), schema) for k in swept]
        for combo in itertools.product(*values):
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
        Naming the key: a schema violation, a key that is not a string or is given twice
        in a file, a number that is not finite, more than :data:`MAX_METHODS` methods, or
        a check of a method kind, or of a model of the ``train`` section
        (:func:`segpipe.training.settings.resolve_train`).
    """
    config = replace_methods_from(copy.deepcopy(config), configfiles, command_line)
    check_keys_and_numbers(config)
    coerce_values(config, schema)
    if isinstance(config.get("methods"), dict):
        config["methods"] = expand_sweeps(config["methods"], schema)
        coerce_values(config, schema)  # inside sweeps, which the schema sees only now
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
    for key, setting in [("tiles", config["tiles"])] + [
            (f"methods.{name}.tiles", m["tiles"]) for name, m in methods.items() if "tiles" in m]:
        if isinstance(setting, dict) and setting.get("overlap", 0) >= setting["size"]:
            raise ConfigError(key, f"overlap ({setting['overlap']}) must be smaller than the "
                                   f"tile size ({setting['size']})")
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
    from segpipe.training.settings import resolve_train

    config["train"] = resolve_train(config, schema)
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
        Made absolute, as are ``ground_truth_dir`` and the ``train`` section's folders,
        so the record holds in any folder.
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

    config = load_config_file(defaults)
    if config_file is not None:
        try:
            user = load_config_file(config_file) or {}
        except OSError as err:
            raise RunConfigError(f"cannot read --config {config_file}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise RunConfigError(f"--config {config_file}: not valid YAML ({_yaml_where(err)})") from None
        if not isinstance(user, dict):
            raise RunConfigError(f"--config {config_file}: not a mapping of config keys")
        check_keys_and_numbers(user)  # before --methods looks names up and sorts them
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
    if isinstance(config.get("train"), dict):
        from segpipe.training.settings import absolute_paths

        config["train"] = absolute_paths(config["train"])
    resolve_config(copy.deepcopy(config), load_schema(schema))
    return config


def _yaml_where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
