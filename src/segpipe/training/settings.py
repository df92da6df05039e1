"""The ``train`` section of a config: defaults filled in, and every mistake caught before
any job runs, naming the key."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError

# Reading keys a model inherits from the run's top level when it does not set them.
INHERITED = ("channel", "z", "time", "intensity_range")
# Settings that hold paths: made absolute by `segpipe run` / `segpipe train`.
PATH_KEYS = ("input_dir", "ground_truth_dir", "val_dir", "val_ground_truth_dir")


def default_model(backbone: str) -> str:
    """The design ``model: auto`` means: torchvision's v2 on ResNet-50, the original
    (lighter) heads on the small backbones (segpipe.maskrcnn.model.build_network)."""
    return "maskrcnn_resnet50_fpn_v2" if backbone == "resnet50" else "maskrcnn_resnet50_fpn"


def train_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of a ``train.<name>`` entry, from the schema (``augment`` in full)."""
    spec = schema["$defs"]["train_model"]["properties"]
    defaults = {k: copy.deepcopy(v["default"]) for k, v in spec.items()
                if "default" in v and k not in INHERITED}
    defaults["augment"] = {k: v["default"] for k, v in spec["augment"]["properties"].items()}
    return defaults


def resolve_train(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, dict]:
    """Every model of ``config["train"]`` with its defaults, checked.

    Raises
    ------
    ConfigError
        Naming the key: a folder or file that does not exist, both ``val_fraction`` and
        ``val_dir``, ``base: DEFAULT`` with a backbone COCO weights do not fit,
        ``min_size`` larger than ``max_size``, ``z``/``time`` ``all``, an unknown
        placeholder in ``ground_truth_pattern``.
    """
    defaults = train_defaults(schema)
    models = {}
    for name, given in (config.get("train") or {}).items():
        key = f"train.{name}"
        settings = {**defaults, **copy.deepcopy(given)}
        settings["augment"] = {**defaults["augment"], **given.get("augment", {})}
        for k in INHERITED:
            settings.setdefault(k, copy.deepcopy(config[k]))
        if settings["model"] == "auto":
            settings["model"] = default_model(settings["backbone"])
        _check(key, given, settings)
        models[name] = settings
    for method, settings in config["methods"].items():
        weights = settings.get("weights")
        if isinstance(weights, Mapping) and weights["trained"] not in models:
            known = ", ".join(sorted(models)) or "none"
            raise ConfigError(f"methods.{method}.weights.trained",
                              f"no model {weights['trained']!r} in the train section "
                              f"(models: {known})")
    return models


def _check(key: str, given: Mapping[str, Any], s: Mapping[str, Any]) -> None:
    from segpipe.config import check_truth_pattern
    from segpipe.maskrcnn.weights import resolve_weights

    for k in ("input_dir", "val_dir"):
        if s[k] is not None and not Path(s[k]).is_dir():
            raise ConfigError(f"{key}.{k}", f"folder {s[k]!r} does not exist")
    for k in ("ground_truth_dir", "val_ground_truth_dir"):
        if s[k] is not None and not Path(s[k]).exists():
            raise ConfigError(f"{key}.{k}", f"{s[k]!r} does not exist")
    if "val_fraction" in given and s["val_dir"] is not None:
        raise ConfigError(f"{key}.val_fraction",
                          "give val_fraction or val_dir, not both (val_dir holds the "
                          "validation images; every image of input_dir then trains)")
    if s["val_ground_truth_dir"] is not None and s["val_dir"] is None:
        raise ConfigError(f"{key}.val_ground_truth_dir", "only used with val_dir")
    if s["val_dir"] is not None and Path(s["val_dir"]).resolve() == Path(s["input_dir"]).resolve():
        raise ConfigError(f"{key}.val_dir", "is input_dir: validation images must not train")
    source = resolve_weights(s["model"], s["base"], key=f"{key}.base")
    if source.kind == "named" and s["backbone"] != "resnet50":
        raise ConfigError(f"{key}.base",
                          f"{s['base']} (torchvision's COCO weights) fits backbone resnet50 "
                          f"only, not {s['backbone']}: set base to none or a checkpoint")
    if source.kind == "path" and not Path(source.path).is_file():
        raise ConfigError(f"{key}.base", f"checkpoint file {source.path!r} does not exist")
    if s["min_size"] is None and s["max_size"] is not None:
        raise ConfigError(f"{key}.max_size", "only used with min_size (null: native scale)")
    if s["min_size"] is not None and s["max_size"] is not None and s["min_size"] > s["max_size"]:
        raise ConfigError(f"{key}.min_size",
                          f"{s['min_size']} is larger than max_size {s['max_size']}")
    for k in ("z", "time"):
        if s[k] == "all":
            raise ConfigError(f"{key}.{k}", "all (each plane an image) is not supported for "
                                            "training; pick a plane or a projection")
    if s["ground_truth_pattern"] is not None:
        try:
            check_truth_pattern(s["ground_truth_pattern"])
        except ConfigError as err:
            raise ConfigError(f"{key}.ground_truth_pattern", err.problem) from None


def absolute_paths(train: Mapping[str, Any], *, base: str | os.PathLike = ".") -> dict[str, Any]:
    """``train`` with its folders (and a checkpoint ``base``) made absolute, so the record
    of a run holds from any folder."""
    out = copy.deepcopy(dict(train))
    for settings in out.values():
        if not isinstance(settings, dict):
            continue
        for k in PATH_KEYS:
            if isinstance(settings.get(k), str):
                settings[k] = str((Path(base) / settings[k]).resolve())
        weights = settings.get("base")
        if isinstance(weights, str) and ("/" in weights or Path(weights).suffix in (".pt", ".pth")):
            settings["base"] = str((Path(base) / weights).resolve())
    return out
