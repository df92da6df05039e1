"""The method registry: one entry per config ``kind``.

Adding a method is one function, one entry here (its :class:`MethodSpec`: what its labels
mean, which runner, what input) and one block in ``workflow/schemas/config.schema.yaml``;
the rules, scoring, summary and report need no change (``tests/test_registry.py`` runs a
toy method through the workflow to check it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.errors import ConfigError
from segpipe.maskrcnn import load_maskrcnn, maskrcnn_tiled, segment_maskrcnn
from segpipe.methods.base import LABEL_MEANINGS, MethodSpec, Segmentation
from segpipe.methods.edges import edges_tiled, segment_edges
from segpipe.methods.kmeans import kmeans_tiled, segment_kmeans
from segpipe.methods.region_growing import region_growing_tiled, segment_region_growing
from segpipe.methods.superpixels import segment_superpixels, superpixels_tiled
from segpipe.methods.threshold import (
    multi_threshold_tiled,
    segment_multi_threshold,
    segment_threshold,
    threshold_tiled,
)
from segpipe.methods.watershed import segment_watershed, watershed_tiled

if TYPE_CHECKING:
    from segpipe.maskrcnn.weights import WeightsSource


def _check_threshold(name: str, settings: Mapping[str, Any]) -> None:
    if settings.get("method") == "value" and "value" not in settings:
        raise ConfigError(f"methods.{name}.value", "method 'value' needs a 'value' setting")
    if settings.get("method") != "value" and "value" in settings:
        raise ConfigError(
            f"methods.{name}.value", f"only used with method 'value', not {settings['method']!r}"
        )


def _check_multi_threshold(name: str, settings: Mapping[str, Any]) -> None:
    has_classes, has_list = "classes" in settings, "thresholds" in settings
    if has_classes == has_list:
        raise ConfigError(f"methods.{name}", "give exactly one of 'classes' and 'thresholds'")
    cuts = settings.get("thresholds", [])
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise ConfigError(f"methods.{name}.thresholds", f"must rise strictly, got {cuts}")


def _check_maskrcnn(name: str, settings: Mapping[str, Any]) -> None:
    from segpipe.maskrcnn.weights import resolve_weights

    key = f"methods.{name}.weights"
    source = resolve_weights(settings["model"], settings["weights"], key=key)
    if source.kind == "path" and not Path(source.path).is_file():
        raise ConfigError(key, f"checkpoint file {source.path!r} does not exist")
    # {trained: NAME} is checked against the train section by segpipe.config.
    if settings["min_size"] > settings["max_size"]:
        raise ConfigError(
            f"methods.{name}.min_size",
            f"{settings['min_size']} is larger than max_size {settings['max_size']}",
        )


def _maskrcnn_weights(settings: Mapping[str, Any], *,
                      models_dir: str | None = None) -> WeightsSource:
    from segpipe.maskrcnn.weights import resolve_weights

    return resolve_weights(settings["model"], settings["weights"], models_dir=models_dir)


# bytes_per_pixel: peak memory beyond the decoded image on a 9 MP 8-bit image
# (benchmarks/bench_memory.py; docs/benchmarks.md, "memory"), plus the image, doubled
# for 16-bit samples.
BUILTIN = (
    MethodSpec("threshold", segment_threshold, "foreground", "grey", _check_threshold,
               bytes_per_pixel=4, tiled=threshold_tiled,
               summary="one global threshold (mean, Otsu or a value); 1 = foreground"),
    MethodSpec("multi_threshold", segment_multi_threshold, "classes", "grey",
               _check_multi_threshold, bytes_per_pixel=8, tiled=multi_threshold_tiled,
               summary="several thresholds (multi-Otsu or given); intensity bands 0..N-1"),
    MethodSpec("edges", segment_edges, "regions", "grey", edge_maps=True, bytes_per_pixel=40,
               tiled=edges_tiled,
               summary="3x3 Sobel or Laplace edges; the regions they enclose, 0 on edges"),
    MethodSpec("kmeans", segment_kmeans, "classes", "rgb", bytes_per_pixel=86,
               tiled=kmeans_tiled,
               summary="k-means on pixel colours; clusters 0..k-1 from the darkest"),
    MethodSpec("watershed", segment_watershed, "instances", "grey", bytes_per_pixel=188,
               tiled=watershed_tiled,
               summary="marker-controlled watershed of a threshold; splits touching objects"),
    MethodSpec("superpixels", segment_superpixels, "regions", "rgb", bytes_per_pixel=164,
               tiled=superpixels_tiled,
               summary="SLIC or Felzenszwalb superpixels; regions 1..K cover the image"),
    MethodSpec("region_growing", segment_region_growing, "instances", "grey",
               bytes_per_pixel=78, tiled=region_growing_tiled,
               summary="objects grown from local extremes within an intensity tolerance"),
    # The image as a float tensor on the host, its pasted masks and label image. Tiled:
    # each tile at its own scale, batched with the other images' tiles (batch_runner).
    MethodSpec("maskrcnn", segment_maskrcnn, "instances", "rgb", _check_maskrcnn,
               runner="batch", load=load_maskrcnn, weights=_maskrcnn_weights, bytes_per_pixel=32,
               tiled=maskrcnn_tiled,
               summary="torchvision Mask R-CNN, batched on a GPU: class, box, score, mask"),
)

REGISTRY = {spec.kind: spec for spec in BUILTIN}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method kind (a :class:`MethodSpec`) to the registry; it also needs a block in
    the config schema. Returns ``spec``. Raises ValueError if the kind exists."""
    if spec.kind in REGISTRY:
        raise ValueError(f"method kind {spec.kind!r} is registered already")
    REGISTRY[spec.kind] = spec
    return spec


# Modules that register more kinds (``register``), imported with the registry: a
# comma-separated list of importable names. The variable reaches every job, local or on a
# cluster node, as the rest of the environment does.
PLUGINS_VARIABLE = "SEGPIPE_METHODS"


def load_plugins(names: str | None = None) -> None:
    """Import the modules named in ``$SEGPIPE_METHODS`` (or ``names``); each registers its
    kinds. An import error names the variable, so a typo is not a mystery."""
    import importlib
    import os

    if names is None:
        names = os.environ.get(PLUGINS_VARIABLE, "")
    for name in filter(None, (n.strip() for n in names.split(","))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"{PLUGINS_VARIABLE}: cannot import method module {name!r}: {err}") from err


def get_method(kind: str) -> MethodSpec:
    """The registry entry for a config ``kind``; raises KeyError naming the known kinds."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown method kind {kind!r}; known: {sorted(REGISTRY)}") from None


load_plugins()

__all__ = ["LABEL_MEANINGS", "REGISTRY", "MethodSpec", "Segmentation", "get_method", "load_plugins", "register"]
