"""Make ``camkit.cli`` importable when camkit is imported from a source checkout.

The command-line package lives at the top of the repository (``cli/``) and is installed as
``camkit.cli`` (``package-dir`` in pyproject.toml). An editable install maps it; but Python puts the
current folder first on ``sys.path``, so running from the repository root with a regular (wheel)
install imports ``camkit`` from the checkout, where ``camkit/cli`` does not exist. This finder maps
``camkit.cli`` to ``../cli`` in exactly that case and does nothing in an installed package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_CLI = _PACKAGE_DIR.parent / "cli"


class _SourceCliFinder(importlib.abc.MetaPathFinder):
    """Finds ``camkit.cli`` (the package only; its submodules follow its ``__path__``)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "camkit.cli":
            return None
        return importlib.util.spec_from_file_location(
            fullname, _SOURCE_CLI / "__init__.py", submodule_search_locations=[str(_SOURCE_CLI)]
        )


def install_source_cli_finder() -> None:
    """Register the finder when this camkit is a source checkout without ``camkit/cli``."""
    if (_PACKAGE_DIR / "cli").is_dir() or not (_SOURCE_CLI / "__init__.py").is_file():
        return
    if not any(isinstance(f, _SourceCliFinder) for f in sys.meta_path):
        sys.meta_path.append(_SourceCliFinder())
