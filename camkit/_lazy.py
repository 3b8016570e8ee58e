"""Lazy package attributes: names resolved from their modules on first use (keeps imports light)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, table: dict[str, tuple[str, str]], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name] = (module, attribute)`` once and caches it."""

    def __getattr__(name: str) -> Any:
        if name in table:
            mod, attr = table[name]
            value = getattr(importlib.import_module(mod), attr)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
