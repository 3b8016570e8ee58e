"""Record types shared by the dataset readers, plus the small helpers every reader uses.

Box convention everywhere in camkit.datasets: ``boxes`` is a float64 array of shape (n, 4) holding
``x0, y0, x1, y1`` in original-image pixels, inclusive corners as wsolevaluation treats them
(the box covers pixel columns x0..x1 and rows y0..y1; its area is ``(x1-x0+1)*(y1-y0+1)``).
No torch here: these types are read by the command-line startup path.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from camkit.errors import DatasetError

_SNIPPET_CHARS = 80


@dataclass(eq=False)
class LocSample:
    """One image with its class and ground-truth boxes.

    - ``image_path``: absolute path of the image file (may not exist; the evaluator reports that).
    - ``image_id``: the dataset's own id (ILSVRC file stem, wsolevaluation/CUB relpath, CSV path).
    - ``class_index``: 0-based, in the model's class order (ILSVRC: sorted wnids; CUB: label-1).
    - ``boxes``: float64 (n, 4) ``x0, y0, x1, y1``, original pixels, inclusive; n >= 1 for box datasets,
      n == 0 for mask datasets (OpenImages).
    - ``width``/``height``: image size in pixels when known: from the annotations (XML, wsolevaluation
      image_sizes.txt) or, for CUB, from the image header; else None.
    - ``mask_paths``/``ignore_path``: OpenImages PxAP foreground masks and the ignore mask.
    """

    image_path: Path
    image_id: str
    class_index: int
    boxes: np.ndarray
    width: int | None = None
    height: int | None = None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None

    def __eq__(self, other: object) -> bool:
        # Arrays make the generated __eq__ ambiguous; compare boxes by value instead.
        if not isinstance(other, LocSample):
            return NotImplemented
        return (
            self.image_path == other.image_path
            and self.image_id == other.image_id
            and self.class_index == other.class_index
            and self.boxes.shape == other.boxes.shape
            and bool(np.array_equal(self.boxes, other.boxes))
            and self.width == other.width
            and self.height == other.height
            and self.mask_paths == other.mask_paths
            and self.ignore_path == other.ignore_path
        )


@dataclass
class LocDataset:
    """A localization split as read from disk.

    ``class_names[i]`` / ``class_ids[i]`` describe class index ``i`` when the layout carries them
    (ILSVRC: wnids and synset names; CUB: folder names and bird names). ``n_clipped_boxes`` counts
    boxes that reached outside their image and were clipped to it. ``source`` names the layout and
    the annotation file(s) read. ``origin``: how :func:`camkit.datasets.read_layout` read it (``kind``,
    ``root``, ``annotations``, ``split``; absolute paths), so that a run's viewer can find its photos
    again; None for a dataset built otherwise.
    """

    name: str
    samples: list[LocSample]
    class_names: list[str] | None = None
    class_ids: list[str] | None = None
    n_clipped_boxes: int = 0
    source: str = ""
    origin: dict | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, i: int) -> LocSample:
        return self.samples[i]


def line_error(path: Path | str, line_no: int, expected: str, line: str, fix: str = "") -> DatasetError:
    """A one-line DatasetError naming the file, the 1-based line number and the offending text."""
    text = line.strip()
    if len(text) > _SNIPPET_CHARS:
        text = text[:_SNIPPET_CHARS] + "..."
    fix = fix or "correct or delete that line"
    return DatasetError(f"{path} line {line_no}: expected {expected}, got {text!r}; {fix}.")


def clip_boxes(
    boxes: Sequence[Sequence[float]] | np.ndarray, width: int | None, height: int | None
) -> tuple[np.ndarray, int]:
    """Clip x0,y0,x1,y1 boxes to [0, W-1] x [0, H-1]; return (float64 (n, 4) array, boxes changed).

    Without a known size only the lower bound 0 applies (a negative coordinate is outside any image).
    Plain Python per box on purpose: images hold one or two boxes, and numpy's per-call overhead
    dominated reading 50,000 ILSVRC files.
    """
    xmax = width - 1 if width is not None else math.inf
    ymax = height - 1 if height is not None else math.inf
    out, changed = [], 0
    for x0, y0, x1, y1 in boxes:
        box = (
            min(max(float(x0), 0.0), xmax),
            min(max(float(y0), 0.0), ymax),
            min(max(float(x1), 0.0), xmax),
            min(max(float(y1), 0.0), ymax),
        )
        changed += box != (x0, y0, x1, y1)
        out.append(box)
    return np.array(out, dtype=np.float64).reshape(len(out), 4), changed


Box = tuple[float, float, float, float]


def as_box(values: Iterable[float | str]) -> Box:
    """Four coordinates ``x0, y0, x1, y1`` as floats; ValueError unless there are exactly four numbers."""
    x0, y0, x1, y1 = (float(v) for v in values)
    return (x0, y0, x1, y1)


def check_box(path: Path | str, where: str, box: Box) -> None:
    """Reject non-finite boxes and boxes whose far corner lies before the near one."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        raise DatasetError(f"{path} {where}: box {box} has a non-finite coordinate; correct that box.")
    if x1 < x0 or y1 < y0:
        raise DatasetError(
            f"{path} {where}: box x0,y0,x1,y1 = {x0:g},{y0:g},{x1:g},{y1:g} has x1 < x0 or y1 < y0; "
            "boxes must be given as top-left and bottom-right corners."
        )


def image_header_size(path: Path) -> tuple[int | None, int | None]:
    """``(width, height)`` from an image file's header (PIL opens lazily: nothing is decoded), or
    ``(None, None)`` when the file is missing or unreadable (the evaluator reports that image)."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None


def warn_clipped(name: str, n_clipped: int) -> None:
    """Warn once per dataset when boxes had to be clipped to their images."""
    if n_clipped:
        warnings.warn(
            f"{name}: {n_clipped} box(es) reached outside their image and were clipped to it",
            stacklevel=3,
        )
