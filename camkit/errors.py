"""Errors camkit raises on bad input.

Every message is one line that says what is wrong and what to do about it. The library speaks in
its own terms (Python parameter names such as ``input_size=4``); the CLI prints ``error: <message>``
with parameter names translated to its flags (``--input-size 4``) and exits non-zero, never with a
traceback.
"""

from __future__ import annotations

from typing import Any


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


class UnknownClassError(ClassSelectionError):
    """A class name that matches none of the model's categories."""


class DatasetError(CamkitError):
    """A dataset folder or annotation file is missing or malformed (the message names file and line)."""


class RunDirectoryError(CamkitError):
    """An output folder cannot be used: not writable, locked by another run, or holding foreign files."""


class ParameterError(CamkitError, ValueError):
    """A function argument is out of its range or of the wrong kind.

    ``str(err)`` names the Python parameter (``input_size=20000 is too large: ...``); front ends
    that call it something else (the CLI's ``--input-size``) render it with :meth:`render`.
    """

    def __init__(self, param: str, value: Any, reason: str) -> None:
        self.param = param
        self.value = value
        self.reason = reason
        super().__init__(self.render(f"{param}="))

    def render(self, name: str) -> str:
        """The message with the parameter shown as ``name`` (e.g. ``"--input-size "``)."""
        return f"{name}{self.value!r} {self.reason}" if isinstance(self.value, str) else f"{name}{self.value} {self.reason}"
