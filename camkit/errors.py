"""Errors camkit raises on bad input.

Every message is one line that says what is wrong and what to do about it; the CLI prints
it as ``error: <message>`` and exits non-zero, never with a traceback.
"""

from __future__ import annotations


class CamkitError(Exception):
    """Base class: a user-facing problem with the input, the model or the data."""


class ImageError(CamkitError):
    """An image file is missing, unreadable, truncated, not an image, or too large."""


class ModelError(CamkitError):
    """An unknown model name, a model whose head cannot give CAMs, or a bad layer name."""


class WeightsError(ModelError):
    """Weights cannot be downloaded, found, unpickled safely, or do not fit the model."""


class ClassSelectionError(CamkitError):
    """An unknown class name or an out-of-range class index."""


class DatasetError(CamkitError):
    """A dataset folder or annotation file is missing or malformed (the message names file and line)."""
