"""A plain CSV of boxes, for users' own data.

Header ``image_path,class_index,x1,y1,x2,y2`` (columns in any order, extra columns ignored), one row
per box; rows of the same image are merged into one sample (first-appearance order) and must agree on
the class. Coordinates are ``x0, y0, x1, y1`` in original pixels, inclusive, numbers (floats allowed).
Relative image paths are relative to ``image_root``, or to the CSV's folder when no root is given.
Each image's size is read from its header (no decoding): boxes reaching outside the image are
clipped to ``[0, W-1] x [0, H-1]`` with one warning per file (as for ILSVRC XML boxes), and a box
lying entirely outside its image is an error naming the line. An image that cannot be opened keeps
size None (only negative coordinates are clipped; the evaluator reports the image itself).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from camkit.datasets.sample import (
    Box,
    LocDataset,
    LocSample,
    as_box,
    check_box,
    clip_boxes,
    image_header_size,
    line_error,
    warn_clipped,
)
from camkit.errors import DatasetError

COLUMNS = ("image_path", "class_index", "x1", "y1", "x2", "y2")


def read_csv_boxes(
    csv_path: str | Path, image_root: str | Path | None = None, class_names: Sequence[str] | None = None
) -> LocDataset:
    """Read ``image_path,class_index,x1,y1,x2,y2`` rows into a LocDataset.

    ``class_names`` (optional) names the classes; then every class_index must be < len(class_names).
    ``image_id`` is the path exactly as written in the CSV.
    """
    csv_path = Path(csv_path)
    base = Path(os.path.abspath(image_root if image_root is not None else csv_path.parent))
    n_classes = len(class_names) if class_names is not None else None
    merged: dict[str, tuple[int, list[Box], int, list[int]]] = {}
    expected_row = "'image_path,class_index,x1,y1,x2,y2' with an integer class >= 0 and numeric corners"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            names = [h.strip() for h in header] if header else []
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise line_error(
                    csv_path, 1, "the header " + ",".join(COLUMNS), ",".join(header or []),
                    f"add the column(s) {', '.join(missing)}",
                )
            col = {c: names.index(c) for c in COLUMNS}
            for row in reader:
                no = reader.line_num
                if not row or not "".join(row).strip():
                    continue
                raw = ",".join(row)
                try:
                    image = row[col["image_path"]].strip()
                    index = int(row[col["class_index"]])
                    box = as_box(row[col[c]] for c in ("x1", "y1", "x2", "y2"))
                    if not image or index < 0:
                        raise ValueError
                except (IndexError, ValueError):
                    raise line_error(csv_path, no, expected_row, raw) from None
                if n_classes is not None and index >= n_classes:
                    raise DatasetError(
                        f"{csv_path} line {no}: class_index {index} is out of range for {n_classes} class names; "
                        "use 0-based indices."
                    )
                check_box(csv_path, f"line {no}", box)
                if image in merged:
                    first_index, boxes, first_no, box_lines = merged[image]
                    if index != first_index:
                        raise DatasetError(
                            f"{csv_path} line {no}: {image} has class {index} but class {first_index} on line "
                            f"{first_no}; one image holds one class's boxes."
                        )
                    boxes.append(box)
                    box_lines.append(no)
                else:
                    merged[image] = (index, [box], no, [no])
    except OSError as e:
        raise DatasetError(f"cannot read {csv_path}: {e.strerror or e}; check the path.") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{csv_path} is not UTF-8 text; save the CSV as UTF-8.") from None
    if not merged:
        raise DatasetError(f"{csv_path} has a header but no rows; add one row per box.")

    samples, n_clipped = [], 0
    for image, (index, boxes, _, box_lines) in merged.items():
        path = Path(image)
        path = path if path.is_absolute() else base / path
        width, height = image_header_size(path)
        if width is not None and height is not None:
            for corner_box, no in zip(boxes, box_lines, strict=True):
                if corner_box[0] > width - 1 or corner_box[1] > height - 1 or corner_box[2] < 0 or corner_box[3] < 0:
                    corners = ",".join(f"{v:g}" for v in corner_box)
                    raise DatasetError(
                        f"{csv_path} line {no}: box {corners} lies outside {image} ({width}x{height}); "
                        "correct that box (x0,y0,x1,y1 in pixels of the image)."
                    )
        arr, changed = clip_boxes(boxes, width, height)
        n_clipped += changed
        samples.append(LocSample(path, image, index, arr, width, height))
    name = csv_path.stem
    warn_clipped(name, n_clipped)
    return LocDataset(
        name, samples, list(class_names) if class_names is not None else None, None, n_clipped, f"CSV {csv_path}"
    )
