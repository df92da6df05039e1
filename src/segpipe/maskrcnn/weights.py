"""Where Mask R-CNN weights come from, and fetching them once into ``resources/``.

Segment jobs never touch the network: compute nodes are often offline. A local rule
(``fetch_maskrcnn_weights``, run on the submitting machine) downloads named weights with
torchvision's own download and hash check, and records the outcome in a small status file
beside them; segment jobs read the weights from that folder only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from segpipe.errors import ConfigError
from segpipe.imageio import write_bytes_atomic
from segpipe.layout import WEIGHTS_DIR, Layout

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60


# torchvision's weights files, by model and weights name. Copied here so that the
# workflow can name the files without importing torchvision (seconds) on every start;
# tests/test_maskrcnn_weights.py checks the table against torchvision's own enums.
_COCO_V1 = {
    "maskrcnn_resnet50_fpn": "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
    "maskrcnn_resnet50_fpn_v2": "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
}
KNOWN_WEIGHTS = {model: {"COCO_V1": url, "DEFAULT": url} for model, url in _COCO_V1.items()}
# Set to a mirror's base URL (ending in "/") where download.pytorch.org is unreachable
# but an internal server holds the same files.
URL_BASE_ENV = "SEGPIPE_WEIGHTS_URL_BASE"


@dataclass(frozen=True)
class WeightsSource:
    """Resolved ``weights`` setting.

    Attributes
    ----------
    kind : {"named", "path", "trained", "none"}
    path : str or None
        The file the model is loaded from (``None`` for random initialisation).
    url : str or None
        Where named weights are downloaded from.
    """

    kind: str
    path: str | None = None
    url: str | None = None

    @property
    def status_path(self) -> str | None:
        """The fetch rule's record for named weights."""
        return f"{self.path}.status.json" if self.kind == "named" else None


def resolve_weights(model: str, weights: str | Mapping[str, str], *,
                    weights_dir: str | os.PathLike = WEIGHTS_DIR,
                    models_dir: str | os.PathLike | None = None,
                    key: str = "weights") -> WeightsSource:
    """Turn the ``weights`` setting into a :class:`WeightsSource`.

    ``none`` is random initialisation; a torchvision weights name (``DEFAULT``,
    ``COCO_V1``) is a file under ``weights_dir`` named as in its URL; anything with a
    path separator or a ``.pth``/``.pt`` suffix is a local checkpoint; ``{trained: NAME}``
    is the model the run trains, ``models_dir/NAME/model.pt`` (default
    ``results/models``).

    Raises
    ------
    ConfigError
        For an unknown weights name, naming ``key`` and the known names.
    """
    if isinstance(weights, Mapping):
        folder = models_dir if models_dir is not None else Layout().path("models")
        return WeightsSource("trained", path=os.path.join(folder, weights["trained"], "model.pt"))
    if weights == "none":
        return WeightsSource("none")
    known = KNOWN_WEIGHTS[model]
    if weights in known:
        name = Path(urlparse(known[weights]).path).name
        base = os.environ.get(URL_BASE_ENV)
        url = f"{base.rstrip('/')}/{name}" if base else known[weights]
        return WeightsSource("named", path=f"{weights_dir}/{name}", url=url)
    if "/" in weights or Path(weights).suffix in (".pth", ".pt"):
        return WeightsSource("path", path=weights)
    raise ConfigError(
        key,
        f"{weights!r} is neither 'none', a path, nor a weights name of {model} "
        f"({', '.join(known)})",
    )


def fetch_weights(url: str, path: str | os.PathLike, *, status_out: str | os.PathLike,
                  timeout_s: float = DOWNLOAD_TIMEOUT_S) -> dict[str, Any]:
    """Make sure the weights at ``url`` are at ``path``; record the outcome in ``status_out``.

    A file already at ``path`` is used as it is (no network). Otherwise torchvision's
    download runs, with the SHA-256 prefix in the file name checked. A failed download is
    recorded, not raised: the other methods of the run go on, and the run ends by saying
    which file to put where.

    Returns
    -------
    dict
        The status written: ``ok``, ``path``, ``url`` and, on failure, ``error``.
    """
    import torch.hub

    path = Path(path)
    status = {"ok": True, "path": str(path), "url": url}
    if path.exists():
        log.info("weights already present at %s; not downloading", path)
    else:
        log.info("downloading %s to %s", url, path)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout_s)
        try:
            torch.hub.load_state_dict_from_url(
                url, model_dir=str(path.parent), file_name=path.name,
                check_hash=True, progress=False, weights_only=True,
            )
        except Exception as err:  # noqa: BLE001 - any failure is reported the same way: which file, where
            path.unlink(missing_ok=True)
            status.update(ok=False, error=f"{type(err).__name__}: {err}")
            log.error("could not download %s: %s", url, status["error"])
        finally:
            socket.setdefaulttimeout(previous)
    write_bytes_atomic(status_out, json.dumps(status, indent=1).encode())
    return status


def missing_weights_message(status: Mapping[str, Any]) -> str:
    """The one thing a user has to do when weights could not be fetched."""
    return (
        f"Mask R-CNN weights are missing: download {status['url']} and put it at "
        f"{status['path']} (segment jobs load weights only from there), then run again. "
        f"The download failed with: {status.get('error', 'unknown error')}"
    )


def read_status(path: str | os.PathLike) -> dict[str, Any] | None:
    """The fetch rule's record, or ``None`` if there is none."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def refresh_status(source: WeightsSource) -> bool:
    """Bring the fetch record in line with the folder, before any job runs.

    A user who copies the file in after a failed download should not have to delete
    anything: the record is rewritten as found, and since it is newer than the Mask
    R-CNN tables, Snakemake re-runs those jobs with the weights. A record of a file that
    has since gone is removed, so the fetch rule runs again when it is next needed.

    Returns
    -------
    bool
        Whether the record changed.
    """
    status = read_status(source.status_path)
    if status is None or status["ok"] == Path(source.path).exists():
        return False
    if status["ok"]:
        Path(source.status_path).unlink()
    else:
        log.info("weights now present at %s", source.path)
        found = {"ok": True, "path": source.path, "url": source.url, "found": "placed by hand"}
        write_bytes_atomic(source.status_path, json.dumps(found, indent=1).encode())
    return True
