"""ImageNet-1k class names for models (index 0-999, the sorted-wnid order), without importing torchvision.

The names are torchvision's (what ``weights.meta["categories"]`` holds); the list is the one
package data file read by :mod:`camkit.datasets.imagenet_wnids`.
"""

from __future__ import annotations

from functools import lru_cache

from ..datasets.imagenet_wnids import ImageNetClass, imagenet_classes

__all__ = ["ImageNetClass", "imagenet_classes", "imagenet_categories"]


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(c.name for c in imagenet_classes())


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names; index i is class i (a fresh list each call)."""
    return list(_names())
