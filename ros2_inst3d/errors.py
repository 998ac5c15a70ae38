"""The package's error types, at the bottom of the import graph.

Any module may raise or catch these without importing the module that happens to handle them
(the schema, the segmenter): an error type lives below the code that raises it.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is unknown, has the wrong type or is out of range."""


class SegmentationError(RuntimeError):
    """A cloud could not be segmented; ``reason`` is the diagnostics counter it goes to."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


__all__ = ["ConfigError", "SegmentationError"]


class TransformUnavailable(Exception):
    """No transform from a scan's frame into the fixed frame at its stamp (front ends raise it)."""
