"""The 1000 ILSVRC-2012 classes in the standard order (sorted WordNet ids), with their names.

Read from ``imagenet_classes.tsv`` beside this module, one class per line, tab-separated:
``wnid``, the short name torchvision's ImageNet weights use (``weights.meta["categories"]``), and the
full comma-separated WordNet synset names of the Kaggle "ImageNet Object Localization"
``LOC_synset_mapping.txt``. Line ``i`` is class index ``i`` of an ImageNet-1k classifier: the
wnids in sorted order, the ILSVRC convention.

The dataset readers use this list only when no ``LOC_synset_mapping.txt`` is found beside the
annotations; models use the short names (:func:`camkit.models.imagenet.imagenet_categories`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

DATA_FILE = Path(__file__).with_name("imagenet_classes.tsv")


class ImageNetClass(NamedTuple):
    wnid: str  # "n01440764"
    name: str  # "tench" (torchvision's category name)
    synset: str  # "tench, Tinca tinca" (all WordNet names)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 classes; index i is class i."""
    rows = [ln.split("\t") for ln in DATA_FILE.read_text(encoding="utf-8").splitlines() if ln]
    if len(rows) != 1000 or any(len(r) != 3 for r in rows):
        raise RuntimeError(f"{DATA_FILE} is damaged (1000 lines of wnid<TAB>name<TAB>synset expected): reinstall camkit")
    return tuple(ImageNetClass(*r) for r in rows)


IMAGENET_WNIDS: tuple[str, ...] = tuple(c.wnid for c in imagenet_classes())
IMAGENET_SYNSET_NAMES: tuple[str, ...] = tuple(c.synset for c in imagenet_classes())
