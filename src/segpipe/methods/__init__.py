"""The method registry: one entry per config ``kind``.

Adding a method is one function, one entry here and one block in
``workflow/schemas/config.schema.yaml``; the rules need no change.
"""

from __future__ import annotations

from segpipe.errors import ConfigError
from segpipe.methods.base import MethodSpec, Segmentation
from segpipe.methods.edges import segment_edges
from segpipe.methods.kmeans import segment_kmeans
from segpipe.methods.threshold import segment_multi_threshold, segment_threshold


def _check_threshold(name, settings):
    if settings.get("method") == "value" and "value" not in settings:
        raise ConfigError(f"methods.{name}.value", "method 'value' needs a 'value' setting")
    if settings.get("method") != "value" and "value" in settings:
        raise ConfigError(
            f"methods.{name}.value", f"only used with method 'value', not {settings['method']!r}"
        )


def _check_multi_threshold(name, settings):
    has_classes, has_list = "classes" in settings, "thresholds" in settings
    if has_classes == has_list:
        raise ConfigError(f"methods.{name}", "give exactly one of 'classes' and 'thresholds'")
    cuts = settings.get("thresholds", [])
    if any(b <= a for a, b in zip(cuts, cuts[1:])):
        raise ConfigError(f"methods.{name}.thresholds", f"must rise strictly, got {cuts}")


REGISTRY = {
    spec.kind: spec
    for spec in (
        MethodSpec("threshold", segment_threshold, "grey", _check_threshold),
        MethodSpec("multi_threshold", segment_multi_threshold, "grey", _check_multi_threshold),
        MethodSpec("edges", segment_edges, "grey"),
        MethodSpec("kmeans", segment_kmeans, "rgb"),
    )
}


def get_method(kind):
    """The registry entry for a config ``kind``; raises KeyError naming the known kinds."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown method kind {kind!r}; known: {sorted(REGISTRY)}") from None


__all__ = ["MethodSpec", "Segmentation", "REGISTRY", "get_method"]
