"""clovaai/wsolevaluation metadata: ``metadata/<DATASET>/<split>/*.txt``.

Files, parsed as wsolevaluation's ``data_loaders.py`` does (each line ``strip('\\n').split(',')``,
so a path may hold spaces but not commas):

- ``image_ids.txt``: one image path per line, relative to the image root (e.g. ``val/X.JPEG``); this
  is the sample order.
- ``class_labels.txt``: ``path,label`` with 0-based integer labels.
- ``image_sizes.txt``: ``path,w,h`` (CUB, ILSVRC; absent for OpenImages).
- ``localization.txt``: boxes ``path,x0,y0,x1,y1`` (one line per box, integers, original pixels,
  inclusive; CUB's are ``x, y, x+w, y+h`` of the raw CUB boxes), or for OpenImages masks
  ``path,mask_path,ignore_path`` (one line per foreground mask; only an image's first line names the
  ignore mask, later lines leave it empty). Mask paths are relative to ``mask_root``.

Blank lines are skipped (the reference would fail on them); a trailing ``\\r`` is dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from camkit.datasets.sample import LocDataset, LocSample, as_box, check_box, clip_boxes, line_error, warn_clipped
from camkit.errors import DatasetError


def _lines(path: Path, required: bool = True) -> list[tuple[int, str]] | None:
    """(1-based line number, text) of the non-blank lines of ``path``; None if optional and absent."""
    if not path.is_file():
        if not required:
            return None
        raise DatasetError(
            f"{path} is missing; a wsolevaluation split folder holds image_ids.txt, class_labels.txt "
            "and localization.txt."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}; check the file.") from None
    return [(no, line.rstrip("\r")) for no, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_wsol_metadata(
    metadata_dir: str | Path, image_root: str | Path, mask_root: str | Path | None = None
) -> LocDataset:
    """Read one wsolevaluation split folder, e.g. ``metadata/CUB/test``.

    ``image_root``: the folder the image ids are relative to (wsolevaluation's ``data_root``);
    ``mask_root``: the folder OpenImages mask paths are relative to (default: ``image_root``).
    Samples follow ``image_ids.txt``; ``image_id`` is the relative path. Boxes reaching outside the
    size given in ``image_sizes.txt`` are clipped. For ``metadata/ILSVRC/*`` the ImageNet wnids and
    names are attached as class ids/names.
    """
    metadata_dir = Path(metadata_dir)
    if not metadata_dir.is_dir():
        raise DatasetError(f"metadata folder {metadata_dir} does not exist; pass e.g. metadata/CUB/test.")
    image_base = Path(os.path.abspath(image_root))
    mask_base = Path(os.path.abspath(mask_root)) if mask_root is not None else image_base

    ids_file = metadata_dir / "image_ids.txt"
    image_ids = []
    seen: dict[str, int] = {}
    for no, line in _lines(ids_file) or []:
        if line in seen:
            raise DatasetError(f"{ids_file} line {no}: {line} is listed twice (first on line {seen[line]}); keep one.")
        seen[line] = no
        image_ids.append(line)
    if not image_ids:
        raise DatasetError(f"{ids_file} lists no images; use the metadata from clovaai/wsolevaluation.")

    labels_file = metadata_dir / "class_labels.txt"
    labels: dict[str, int] = {}
    for no, line in _lines(labels_file) or []:
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            label = int(parts[1])  # int() accepts surrounding spaces, as in the reference
            if label < 0:
                raise ValueError
        except ValueError:
            raise line_error(labels_file, no, "'path,label' with a label >= 0", line) from None
        labels[parts[0]] = label

    sizes_file = metadata_dir / "image_sizes.txt"
    sizes: dict[str, tuple[int, int]] = {}
    for no, line in _lines(sizes_file, required=False) or []:
        parts = line.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            w, h = int(parts[1]), int(parts[2])
            if w <= 0 or h <= 0:
                raise ValueError
        except ValueError:
            raise line_error(sizes_file, no, "'path,width,height' with positive integers", line) from None
        sizes[parts[0]] = (w, h)

    loc_file = metadata_dir / "localization.txt"
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str] = {}
    kind = None
    for no, line in _lines(loc_file) or []:
        parts = line.split(",")
        line_kind = {5: "boxes", 3: "masks"}.get(len(parts))
        if line_kind is None or (kind is not None and line_kind != kind):
            expected = {
                None: "'path,x0,y0,x1,y1' (boxes) or 'path,mask,ignore' (masks)",
                "boxes": "'path,x0,y0,x1,y1'",
                "masks": "'path,mask_path,ignore_path'",
            }[kind]
            raise line_error(loc_file, no, expected, line)
        kind = line_kind
        image_id = parts[0]
        if kind == "boxes":
            try:
                box = as_box(int(v) for v in parts[1:])
            except ValueError:
                raise line_error(loc_file, no, "'path,x0,y0,x1,y1' with integer pixels", line) from None
            check_box(loc_file, f"line {no}", box)
            boxes.setdefault(image_id, []).append(box)
        else:
            if not parts[1]:
                raise line_error(loc_file, no, "'path,mask_path,ignore_path' with a mask path", line)
            if image_id in masks:
                if parts[2]:
                    raise line_error(
                        loc_file, no, "an empty ignore path on an image's second and later lines", line
                    )
                masks[image_id].append(parts[1])
            else:
                masks[image_id] = [parts[1]]
                ignores[image_id] = parts[2]

    samples, n_clipped = [], 0
    for image_id in image_ids:
        where = f"{image_id} ({ids_file.name} line {seen[image_id]})"
        if image_id not in labels:
            raise DatasetError(f"{labels_file} has no label for {where}; add a 'path,label' line.")
        width, height = sizes.get(image_id, (None, None))
        if kind == "masks":
            if image_id not in masks:
                raise DatasetError(f"{loc_file} has no mask for {where}; add a 'path,mask,ignore' line.")
            ignore = ignores[image_id]
            samples.append(
                LocSample(
                    image_base / image_id, image_id, labels[image_id], np.zeros((0, 4)), width, height,
                    mask_paths=tuple(mask_base / m for m in masks[image_id]),
                    ignore_path=mask_base / ignore if ignore else None,
                )
            )
            continue
        if image_id not in boxes:
            raise DatasetError(f"{loc_file} has no box for {where}; add a 'path,x0,y0,x1,y1' line.")
        arr, changed = clip_boxes(boxes[image_id], width, height)
        n_clipped += changed
        samples.append(LocSample(image_base / image_id, image_id, labels[image_id], arr, width, height))

    dataset = metadata_dir.parent.name
    name = f"{dataset}/{metadata_dir.name}"
    class_names = class_ids = None
    if dataset == "ILSVRC":
        from camkit.datasets.imagenet_wnids import IMAGENET_SYNSET_NAMES, IMAGENET_WNIDS

        class_ids, class_names = list(IMAGENET_WNIDS), list(IMAGENET_SYNSET_NAMES)
    warn_clipped(name, n_clipped)
    return LocDataset(name, samples, class_names, class_ids, n_clipped, f"wsolevaluation metadata {metadata_dir}")
