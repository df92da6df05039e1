"""Logging set-up shared by the workflow scripts."""

from __future__ import annotations

import logging
import os


def log_to_file(path: str | os.PathLike, level: int = logging.INFO) -> None:
    """Send the root logger to ``path`` (a rule's ``log:`` file), with timestamps."""
    logging.basicConfig(
        filename=str(path),
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
