"""segpipe: batch image segmentation with several methods side by side."""

from __future__ import annotations

__version__ = "0.1.0"
