"""The method registry: one entry per config ``kind``.

Adding a method is one function, one entry here and one block in
``workflow/schemas/config.schema.yaml``; the rules need no change.
"""

from __future__ import annotations

from pathlib import Path

from segpipe.errors import ConfigError
from segpipe.maskrcnn import segment_maskrcnn
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


def _check_maskrcnn(name, settings):
    from segpipe.maskrcnn.weights import resolve_weights

    key = f"methods.{name}.weights"
    source = resolve_weights(settings["model"], settings["weights"], key=key)
    if source.kind == "path" and not Path(source.path).is_file():
        raise ConfigError(key, f"checkpoint file {source.path!r} does not exist")
    if settings["min_size"] > settings["max_size"]:
        raise ConfigError(
            f"methods.{name}.min_size",
            f"{settings['min_size']} is larger than max_size {settings['max_size']}",
        )


REGISTRY = {
    spec.kind: spec
    for spec in (
        # bytes_per_pixel: peak memory beyond the decoded image on a 9 MP 8-bit image
        # (benchmarks/bench_memory.py: 0.5, 3, 19 and 40 bytes per pixel), plus the
        # image, doubled for 16-bit samples.
        MethodSpec("threshold", segment_threshold, "grey", _check_threshold,
                   bytes_per_pixel=4),
        MethodSpec("multi_threshold", segment_multi_threshold, "grey", _check_multi_threshold,
                   bytes_per_pixel=8),
        MethodSpec("edges", segment_edges, "grey", bytes_per_pixel=40),
        MethodSpec("kmeans", segment_kmeans, "rgb", bytes_per_pixel=86),
        # The image as a float tensor on the host, its pasted masks and label image.
        MethodSpec("maskrcnn", segment_maskrcnn, "rgb", _check_maskrcnn, batched=True,
                   bytes_per_pixel=32),
    )
}


def get_method(kind):
    """The registry entry for a config ``kind``; raises KeyError naming the known kinds."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown method kind {kind!r}; known: {sorted(REGISTRY)}") from None


__all__ = ["MethodSpec", "Segmentation", "REGISTRY", "get_method"]
