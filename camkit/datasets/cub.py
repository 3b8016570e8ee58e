"""CUB-200-2011 as distributed (``CUB_200_2011.tgz``).

Files under the root (the ``CUB_200_2011`` folder), each ``<image id> <value...>`` per line:
``images.txt`` (``id relpath``, relative to ``images/``), ``bounding_boxes.txt`` (``id x y w h``,
float pixels), ``image_class_labels.txt`` (``id class``, 1..200), ``train_test_split.txt``
(``id is_train``, 1 = train, 0 = test), ``classes.txt`` (``class folder_name``).

Box convention: CUB's ``x, y, w, h`` becomes ``x0, y0, x1, y1 = x, y, x + w, y + h``. This is what
clovaai/wsolevaluation's ``metadata/CUB/*/localization.txt`` holds: CUB's first image,
``Black_Footed_Albatross_0046_18.jpg`` with ``60.0 27.0 325.0 304.0``, is ``60,27,385,331`` there
(385 = 60 + 325, 331 = 27 + 304), and ``Black_Footed_Albatross_0002_55.jpg`` with
``14.0 112.0 388.0 186.0`` is ``14,112,402,298``. (Strictly, an inclusive box of width w would end at
x + w - 1; we follow the benchmark so that scores are comparable.) The raw values are kept as floats;
CUB-200-2011's boxes are integer-valued, so they equal wsolevaluation's integers.

CUB files carry no image sizes, so each image's header is read (PIL opens lazily: no decoding) to
clip boxes that reach beyond the image to [0, W-1] x [0, H-1]; an unreadable image keeps size None
and is reported later by the evaluator.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

from camkit.datasets.sample import (
    LocDataset,
    LocSample,
    check_box,
    clip_boxes,
    image_header_size,
    line_error,
    warn_clipped,
)
from camkit.errors import DatasetError

Split = Literal["train", "test", "all"]
SPLITS: tuple[Split, ...] = ("train", "test", "all")
_FILES = ("images.txt", "bounding_boxes.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


_Row = tuple[list[str], int, str]  # values after the id, 1-based line number, the raw line


def _read_table(path: Path, n_values: int, expected: str) -> dict[int, _Row]:
    """``id -> (values, line number, line)`` for a CUB ``<id> <values>`` file (whitespace separated).

    ``n_values`` is the exact number of values after the id, or -1 for "the rest of the line as one value".
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; extract CUB_200_2011.tgz and pass its CUB_200_2011 folder.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}; re-extract it from CUB_200_2011.tgz.") from None
    table: dict[int, _Row] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if n_values < 0:
            head, _, rest = line.strip().partition(" ")
            parts = [head, rest.strip()] if rest.strip() else [head]
            ok = len(parts) == 2
        else:
            parts = line.split()
            ok = len(parts) == n_values + 1
        if not ok or not parts[0].isdigit():
            raise line_error(path, no, expected, line)
        image_id = int(parts[0])
        if image_id in table:
            first = table[image_id][1]
            raise DatasetError(f"{path} line {no}: id {image_id} appears twice (first on line {first}); keep one.")
        table[image_id] = (parts[1:], no, line)
    return table


def _cub_root(root: Path) -> Path:
    if (root / "images.txt").is_file():
        return root
    if (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    raise DatasetError(
        f"no images.txt in {root}; pass the CUB_200_2011 folder extracted from CUB_200_2011.tgz."
    )


def read_cub(root: str | Path, split: Split = "test") -> LocDataset:
    """Read CUB-200-2011 boxes for ``split`` ("test": 5,794 images, "train": 5,994, or "all").

    Samples follow ``images.txt`` order; ``image_id`` is the relpath (``001.Black_footed_Albatross/
    Black_Footed_Albatross_0046_18.jpg``); ``class_index`` = class - 1. ``class_ids`` are the folder
    names from ``classes.txt`` and ``class_names`` the bird names (``Black footed Albatross``).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown CUB split {split!r}; use 'train', 'test' or 'all'.")
    root = _cub_root(Path(root))
    images = _read_table(root / "images.txt", 1, "'<image id> <relative path>'")
    bboxes = _read_table(root / "bounding_boxes.txt", 4, "'<image id> <x> <y> <width> <height>'")
    labels = _read_table(root / "image_class_labels.txt", 1, "'<image id> <class id>'")
    splits = _read_table(root / "train_test_split.txt", 1, "'<image id> <is_training_image 0|1>'")
    classes = _read_table(root / "classes.txt", -1, "'<class id> <class name>'")

    n_classes = len(classes)
    if sorted(classes) != list(range(1, n_classes + 1)):
        raise DatasetError(f"{root / 'classes.txt'} must number its classes 1..{n_classes} without gaps.")
    class_ids = [classes[k][0][0] for k in range(1, n_classes + 1)]
    class_names = [c.split(".", 1)[-1].replace("_", " ") for c in class_ids]

    if not (root / "images").is_dir():
        raise DatasetError(f"{root / 'images'} is missing; extract all of CUB_200_2011.tgz (images/ holds the photos).")
    image_base = Path(os.path.abspath(root / "images"))
    samples, n_clipped, unreadable = [], 0, 0
    for image_id, ((relpath,), images_no, _) in images.items():
        where = f"image id {image_id} (images.txt line {images_no})"
        for table, fname, what in (
            (bboxes, "bounding_boxes.txt", "'<id> <x> <y> <w> <h>'"),
            (labels, "image_class_labels.txt", "'<id> <class>'"),
            (splits, "train_test_split.txt", "'<id> <is_train>'"),
        ):
            if image_id not in table:
                raise DatasetError(f"{root / fname} has no line for {where}; add a {what} line.")
        (flag,), split_no, split_line = splits[image_id]
        if flag not in ("0", "1"):
            expected = "'<image id> <is_training_image 0|1>'"
            raise line_error(root / "train_test_split.txt", split_no, expected, split_line)
        if split != "all" and (flag == "1") != (split == "train"):
            continue
        (label,), label_no, label_line = labels[image_id]
        if not label.isdigit() or not 1 <= int(label) <= n_classes:
            expected = f"'<image id> <class id 1..{n_classes}>'"
            raise line_error(root / "image_class_labels.txt", label_no, expected, label_line)
        values, box_no, box_line = bboxes[image_id]
        expected = "'<image id> <x> <y> <width> <height>' with width, height >= 0"
        try:
            x, y, w, h = (float(v) for v in values)
        except ValueError:
            raise line_error(root / "bounding_boxes.txt", box_no, expected, box_line) from None
        if not (w >= 0 and h >= 0):  # also rejects NaN
            raise line_error(root / "bounding_boxes.txt", box_no, expected, box_line)
        box = (x, y, x + w, y + h)
        check_box(root / "bounding_boxes.txt", f"line {box_no}", box)
        image_path = image_base / relpath
        width, height = image_header_size(image_path)
        unreadable += width is None
        arr, changed = clip_boxes([box], width, height)
        n_clipped += changed
        samples.append(LocSample(image_path, relpath, int(label) - 1, arr, width, height))

    name = f"CUB-200-2011 {split}"
    if unreadable:
        warnings.warn(f"{name}: {unreadable} image(s) could not be opened to read their size", stacklevel=2)
    warn_clipped(name, n_clipped)
    return LocDataset(name, samples, class_names, class_ids, n_clipped, f"CUB-200-2011 files in {root}")
