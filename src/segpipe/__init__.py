"""segpipe: batch image segmentation with several methods side by side."""

__version__ = "0.1.0"
