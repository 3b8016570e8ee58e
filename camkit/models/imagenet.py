"""ImageNet-1k class names (index 0-999, the standard sorted-wnid order), without importing torchvision.

The list is torchvision's ``_IMAGENET_CATEGORIES`` (what ``weights.meta["categories"]`` holds),
stored as package data so the CLI's default path needs no torchvision import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names; index i is class i."""
    names = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000, "camkit/models/imagenet_classes.txt is damaged: reinstall camkit"
    return names
