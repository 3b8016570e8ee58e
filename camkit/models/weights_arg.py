"""The ``weights`` argument of :func:`camkit.models.load_model`, parsed once into a typed value.

A value is one of four kinds:

- ``default`` (``None``, ``"DEFAULT"``, ``"default"``): the model's default weights;
- ``random`` (``"random"``, ``"none"``, any case): random initialisation, nothing downloaded;
- ``named`` (``"IMAGENET1K_V2"``, ``"embedded"``): a named weights entry of the model;
- ``file`` (a :class:`~pathlib.Path`, or a string holding ``/``, ``\\`` or ``.``, or naming an existing
  file): a local checkpoint.

No torch here: the registry and the CLI parse without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

WeightsKind = Literal["default", "random", "named", "file"]

RANDOM_WEIGHTS = ("random", "none")
DEFAULT_WEIGHTS = ("default",)


@dataclass(frozen=True)
class WeightsChoice:
    """One parsed ``weights`` value: ``kind`` plus the entry ``name`` (named) or the ``path`` (file)."""

    kind: WeightsKind
    name: str | None = None
    path: Path | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else (self.name or self.kind)


WeightsArg = str | Path | WeightsChoice | None


def looks_like_path(value: str) -> bool:
    """A string naming a file rather than a weights entry (``IMAGENET1K_V2``)."""
    return any(ch in value for ch in "/\\.") or Path(value).exists()


def parse_weights(value: WeightsArg) -> WeightsChoice:
    """``value`` (str, Path, None or an already parsed choice) as a :class:`WeightsChoice`."""
    if isinstance(value, WeightsChoice):
        return value
    if value is None:
        return WeightsChoice("default")
    if isinstance(value, Path):
        return WeightsChoice("file", path=value)
    text = str(value)
    if text.lower() in RANDOM_WEIGHTS:
        return WeightsChoice("random")
    if text.lower() in DEFAULT_WEIGHTS:
        return WeightsChoice("default")
    if looks_like_path(text):
        return WeightsChoice("file", path=Path(text))
    return WeightsChoice("named", name=text)
