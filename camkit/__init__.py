"""camkit: Class Activation Maps done exactly, turned into boxes, scored on the real benchmarks.

Entry points: :func:`explain` (photos -> classes, CAMs, boxes), :func:`load_model` and
:func:`list_models` (the model registry), :mod:`camkit.localize` (maps -> boxes),
:mod:`camkit.metrics` (localization metrics), :mod:`camkit.datasets` (ILSVRC, CUB, ... readers).
Submodules that need torch import it on first use, so ``import camkit`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camkit._lazy import lazy_getattr
from camkit._source_tree import install_source_cli_finder as _install_source_cli_finder

__version__ = "0.1.0"

_LAZY = {
    "explain": ("camkit.explanation", "explain"),
    "Explanation": ("camkit.explanation", "Explanation"),
    "load_model": ("camkit.models.registry", "load_model"),
    "list_models": ("camkit.models.registry", "list_models"),
    "load_image": ("camkit.io", "load_image"),
    "normalize_maps": ("camkit.normalize", "normalize_maps"),
    "CamkitError": ("camkit.errors", "CamkitError"),
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:
    # `X as X`: an explicit re-export for type checkers (the names are served lazily by __getattr__)
    from .errors import CamkitError as CamkitError
    from .explanation import Explanation as Explanation
    from .explanation import explain as explain
    from .io import load_image as load_image
    from .models.registry import list_models as list_models
    from .models.registry import load_model as load_model
    from .normalize import normalize_maps as normalize_maps


__getattr__ = lazy_getattr("camkit", _LAZY, globals())

_install_source_cli_finder()
