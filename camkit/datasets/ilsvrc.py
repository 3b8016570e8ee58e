"""ILSVRC-2012 validation boxes in the three layouts users download.

- PASCAL-VOC XML, one file per image (``ILSVRC2012_bbox_val_v3.tgz``; also Kaggle's
  ``ILSVRC/Annotations/CLS-LOC/val``): ``<size><width>/<height>`` and ``<object><name>wnid</name>
  <bndbox><xmin>..`` per box. Sizes known, so boxes are clipped to the image.
- Kaggle "ImageNet Object Localization": ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with
  repeated ``wnid x1 y1 x2 y2``) and ``LOC_synset_mapping.txt`` (``wnid name, name2``). No sizes.
- clovaai/wsolevaluation ``metadata/ILSVRC/test`` (see :mod:`camkit.datasets.wsol_metadata`).

Class index = position of the wnid in sorted wnid order (the order of ``LOC_synset_mapping.txt``,
which is the order of every ImageNet-1k classifier). Boxes are ``x0, y0, x1, y1`` exactly as written
(xmin, ymin, xmax, ymax; inclusive pixels, original image coordinates).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from camkit.datasets.sample import LocDataset, LocSample, as_box, check_box, clip_boxes, line_error, warn_clipped
from camkit.errors import DatasetError

SYNSET_MAPPING_NAME = "LOC_synset_mapping.txt"
KAGGLE_SOLUTION_NAME = "LOC_val_solution.csv"
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_WNID = re.compile(r"n\d{8}")
# Kaggle's zip nests the same files under ILSVRC/; the bbox tarball extracts to val/.
_KAGGLE_IMAGE_DIR = Path("ILSVRC/Data/CLS-LOC/val")
_KAGGLE_XML_DIR = Path("ILSVRC/Annotations/CLS-LOC/val")
_SEARCH_PARENTS = 4


# --------------------------------------------------------------------------------------------
# class lists


def read_synset_mapping(path: str | Path) -> tuple[list[str], list[str]]:
    """Read ``LOC_synset_mapping.txt`` (``wnid name, name2, ...`` per line).

    Returns (wnids, names) sorted by wnid, so list position = class index.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DatasetError(f"cannot read the synset mapping {path}: {e.strerror or e}; check the path.") from None
    pairs: dict[str, str] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not _WNID.fullmatch(wnid):
            raise line_error(path, no, "'wnid name, name2, ...' (e.g. 'n01440764 tench, Tinca tinca')", line)
        if wnid in pairs:
            raise DatasetError(f"{path} line {no}: wnid {wnid} is listed twice; keep one line per wnid.")
        pairs[wnid] = name.strip()
    if not pairs:
        raise DatasetError(f"{path} lists no classes; use the LOC_synset_mapping.txt from the Kaggle download.")
    wnids = sorted(pairs)
    return wnids, [pairs[w] for w in wnids]


def _find_upwards(name: str, starts: Sequence[Path]) -> Path | None:
    """First ``name`` found in each start folder or up to four of its ancestors."""
    for start in starts:
        folder = start.absolute()
        for _ in range(_SEARCH_PARENTS + 1):
            candidate = folder / name
            if candidate.is_file():
                return candidate
            if folder.parent == folder:
                break
            folder = folder.parent
    return None


def _resolve_synsets(
    synsets: str | Path | Sequence[str] | None, search_from: Sequence[Path]
) -> tuple[list[str], list[str] | None, str]:
    """(sorted wnids, names or None, description) from an explicit list/file or the nearest mapping."""
    if synsets is not None and not isinstance(synsets, (str, Path)):
        wnids = sorted(set(synsets))
        return wnids, None, "given wnid list"
    path = Path(synsets) if synsets is not None else _find_upwards(SYNSET_MAPPING_NAME, search_from)
    if path is not None:
        wnids, names = read_synset_mapping(path)
        return wnids, names, str(path)
    from camkit.datasets.imagenet_wnids import IMAGENET_SYNSET_NAMES, IMAGENET_WNIDS

    return list(IMAGENET_WNIDS), list(IMAGENET_SYNSET_NAMES), "built-in ImageNet-1k wnid list"


# --------------------------------------------------------------------------------------------
# images


def _index_images(image_dir: Path) -> dict[str, str]:
    """Map file stem -> file name for the images directly in ``image_dir`` (one directory scan)."""
    try:
        with os.scandir(image_dir) as it:
            return {
                os.path.splitext(e.name)[0]: e.name
                for e in it
                if os.path.splitext(e.name)[1].lower() in _IMAGE_SUFFIXES
            }
    except OSError as e:
        raise DatasetError(
            f"cannot list the image folder {image_dir}: {e.strerror or e}; point it at the folder "
            "holding ILSVRC2012_val_*.JPEG."
        ) from None


def _image_paths(image_dir: Path, stems: Sequence[str], what: str) -> list[Path]:
    """Absolute image paths for the given stems; warns about (or, if none exist, rejects) missing ones."""
    index = _index_images(image_dir)
    base = Path(os.path.abspath(image_dir))
    paths, missing = [], 0
    for stem in stems:
        name = index.get(stem)
        if name is None:
            missing += 1
            name = stem + ".JPEG"
        paths.append(base / name)
    if stems and missing == len(stems):
        raise DatasetError(
            f"none of the {len(stems)} images named in {what} is in {image_dir} "
            f"(e.g. {stems[0]}.JPEG); point the image folder at the ILSVRC2012_val_*.JPEG files."
        )
    if missing:
        warnings.warn(f"{missing} of {len(stems)} images named in {what} are missing from {image_dir}", stacklevel=3)
    return paths


def _class_index(wnid: str, lookup: dict[str, int], where: str, synset_source: str) -> int:
    try:
        return lookup[wnid]
    except KeyError:
        raise DatasetError(
            f"{where}: wnid {wnid!r} is not in the class list ({synset_source}); "
            f"use the {SYNSET_MAPPING_NAME} that matches these annotations."
        ) from None


# --------------------------------------------------------------------------------------------
# PASCAL-VOC XML


def _xml_number(node: ET.Element, tag: str, path: str, where: str) -> float:
    text = node.findtext(tag, default="")  # "" also when the tag is missing
    try:
        return float(text)
    except ValueError:
        raise DatasetError(
            f"{path}: {where} has <{tag}> {text!r}, expected a number; use the XML from ILSVRC2012_bbox_val_v3.tgz."
        ) from None


def read_ilsvrc_xml(
    image_dir: str | Path, xml_dir: str | Path, synsets: str | Path | Sequence[str] | None = None
) -> LocDataset:
    """Read per-image PASCAL-VOC XML boxes (``ILSVRC2012_bbox_val_v3.tgz`` layout).

    ``synsets``: a ``LOC_synset_mapping.txt`` path or a wnid list; by default the mapping file found in
    or above ``xml_dir``/``image_dir``, else the built-in 1000 ImageNet wnids. Samples come in file
    name order; ``image_id`` is the file stem (``ILSVRC2012_val_00000001``). Sizes come from ``<size>``
    and boxes reaching outside the image are clipped to it.
    """
    image_dir, xml_dir = Path(image_dir), Path(xml_dir)
    try:
        with os.scandir(xml_dir) as it:
            xml_names = sorted(e.name for e in it if e.name.lower().endswith(".xml"))
    except OSError as e:
        raise DatasetError(f"cannot list the XML folder {xml_dir}: {e.strerror or e}; check the path.") from None
    if not xml_names:
        raise DatasetError(
            f"no .xml files in {xml_dir}; extract ILSVRC2012_bbox_val_v3.tgz there or pass its folder."
        )
    wnids, names, synset_source = _resolve_synsets(synsets, [xml_dir, image_dir])
    lookup = {w: i for i, w in enumerate(wnids)}

    records = []
    empty = 0
    for xml_name in xml_names:
        path = os.path.join(xml_dir, xml_name)  # str: pathlib joins cost ~10% of 50k reads
        try:
            with open(path, "rb") as f:
                root = ET.fromstring(f.read())
        except ET.ParseError as e:
            raise DatasetError(
                f"{path} line {e.position[0]}: not well-formed XML ({e}); "
                "re-extract the file from ILSVRC2012_bbox_val_v3.tgz."
            ) from None
        except OSError as e:
            raise DatasetError(f"cannot read {path}: {e.strerror or e}; check the file permissions.") from None
        size = root.find("size")
        width = height = None
        if size is not None and size.find("width") is not None and size.find("height") is not None:
            width = int(_xml_number(size, "width", path, "<size>"))
            height = int(_xml_number(size, "height", path, "<size>"))
        objects = root.findall("object")
        if not objects:
            empty += 1
            continue
        wnid = None
        boxes = []
        for k, obj in enumerate(objects, 1):
            where = f"<object> {k}"
            name = (obj.findtext("name") or "").strip()
            if wnid is None:
                wnid = name
            elif name != wnid:
                raise DatasetError(
                    f"{path}: objects of two classes ({wnid}, {name}); each image must hold one class's boxes."
                )
            bnd = obj.find("bndbox")
            if bnd is None:
                raise DatasetError(f"{path}: {where} has no <bndbox>; add xmin/ymin/xmax/ymax or delete the object.")
            box = as_box(_xml_number(bnd, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
            check_box(path, where, box)
            boxes.append(box)
        index = _class_index(wnid or "", lookup, str(path), synset_source)
        records.append((xml_name[: -len(".xml")], index, boxes, width, height))

    if empty:
        warnings.warn(f"{empty} XML file(s) in {xml_dir} have no <object> and were skipped", stacklevel=2)
    paths = _image_paths(image_dir, [r[0] for r in records], f"the XML files of {xml_dir}")
    samples, n_clipped = [], 0
    for (stem, index, boxes, width, height), image_path in zip(records, paths, strict=True):
        arr, changed = clip_boxes(boxes, width, height)
        n_clipped += changed
        samples.append(LocSample(image_path, stem, index, arr, width, height))
    name = "ILSVRC-2012 val"
    warn_clipped(name, n_clipped)
    return LocDataset(name, samples, names, wnids, n_clipped, f"PASCAL-VOC XML in {xml_dir}")


# --------------------------------------------------------------------------------------------
# Kaggle CSV


def read_ilsvrc_kaggle(
    image_dir: str | Path, solution_csv: str | Path, synset_mapping: str | Path | None = None
) -> LocDataset:
    """Read Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, repeated ``wnid x1 y1 x2 y2``).

    ``synset_mapping``: ``LOC_synset_mapping.txt``; by default the one beside the CSV (or above it),
    else the built-in 1000 wnids. Samples keep the CSV's row order; ``image_id`` is ``ImageId``.
    Kaggle carries no image sizes: width/height are None (the evaluator reads them from the image).
    """
    image_dir, solution_csv = Path(image_dir), Path(solution_csv)
    wnids, names, synset_source = _resolve_synsets(synset_mapping, [solution_csv.parent, image_dir])
    lookup = {w: i for i, w in enumerate(wnids)}
    fname = solution_csv
    records = []
    seen: set[str] = set()
    try:
        with open(solution_csv, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
                raise line_error(
                    solution_csv, 1, "the header 'ImageId,PredictionString'", ",".join(header or []),
                    f"use Kaggle's {KAGGLE_SOLUTION_NAME} unchanged",
                )
            for row in reader:
                no = reader.line_num
                if not row or not "".join(row).strip():
                    continue
                raw = ",".join(row)
                if len(row) != 2:
                    raise line_error(fname, no, "'ImageId,wnid x1 y1 x2 y2 ...'", raw)
                image_id, tokens = row[0].strip(), row[1].split()
                if not image_id or not tokens or len(tokens) % 5:
                    raise line_error(fname, no, "'wnid x1 y1 x2 y2' groups", row[1])
                if image_id in seen:
                    raise DatasetError(f"{fname} line {no}: {image_id} appears twice; keep one row per image.")
                seen.add(image_id)
                boxes = []
                wnid = tokens[0]
                for g in range(0, len(tokens), 5):
                    group = tokens[g : g + 5]
                    if not _WNID.fullmatch(group[0]):
                        raise line_error(fname, no, "'wnid x1 y1 x2 y2' groups", row[1])
                    try:
                        box = as_box(group[1:])
                    except ValueError:
                        raise line_error(fname, no, "'wnid x1 y1 x2 y2' groups", row[1]) from None
                    if group[0] != wnid:
                        raise DatasetError(
                            f"{fname} line {no}: boxes of two classes ({wnid}, {group[0]}); "
                            "each image must hold one class's boxes."
                        )
                    check_box(fname, f"line {no}", box)
                    boxes.append(box)
                index = _class_index(wnid, lookup, f"{fname} line {no}", synset_source)
                records.append((image_id, index, boxes))
    except OSError as e:
        raise DatasetError(f"cannot read {solution_csv}: {e.strerror or e}; check the path.") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{solution_csv} is not UTF-8 text; use Kaggle's {KAGGLE_SOLUTION_NAME}.") from None
    if not records:
        raise DatasetError(f"{solution_csv} has no rows; use Kaggle's {KAGGLE_SOLUTION_NAME}.")

    paths = _image_paths(image_dir, [r[0] for r in records], str(solution_csv))
    samples, n_clipped = [], 0
    for (image_id, index, boxes), image_path in zip(records, paths, strict=True):
        arr, changed = clip_boxes(boxes, None, None)
        n_clipped += changed
        samples.append(LocSample(image_path, image_id, index, arr))
    name = "ILSVRC-2012 val"
    warn_clipped(name, n_clipped)
    return LocDataset(name, samples, names, wnids, n_clipped, f"Kaggle {solution_csv}")


# --------------------------------------------------------------------------------------------
# auto-detection


def _has_entry(folder: Path, suffix: str) -> bool:
    """True when ``folder`` holds at least one file ending in ``suffix`` (stops at the first)."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:
        return any(e.name.lower().endswith(suffix) for e in it)


def _find_image_dir(root: Path) -> Path:
    for candidate in (root / "val", root / _KAGGLE_IMAGE_DIR, root):
        if _has_entry(candidate, ".jpeg"):
            return candidate
    raise DatasetError(
        f"no ILSVRC2012_val_*.JPEG images in {root}, {root / 'val'} or {root / _KAGGLE_IMAGE_DIR}; "
        "point the root at the folder that holds the validation images."
    )


def read_ilsvrc(root: str | Path, annotations: str | Path | None = None) -> LocDataset:
    """Read ILSVRC-2012 val boxes from whichever layout is under ``root``.

    ``annotations`` (optional) names the boxes explicitly: a folder of XML files, a wsolevaluation
    split folder (with ``image_ids.txt``), or ``LOC_val_solution.csv``. Otherwise ``root`` is searched,
    first match wins: XML in ``bbox/``, ``ILSVRC/Annotations/CLS-LOC/val/``, ``val/`` or ``root``;
    then ``metadata/ILSVRC/test/``; then ``LOC_val_solution.csv``. Images are looked for in ``val/``,
    ``ILSVRC/Data/CLS-LOC/val/`` or ``root`` (wsolevaluation ids are relative to ``root``).
    """
    from camkit.datasets.wsol_metadata import read_wsol_metadata

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ILSVRC root {root} is not a folder; pass the folder holding val/ and the boxes.")
    if annotations is not None:
        ann = Path(annotations)
        if ann.is_file() and ann.suffix.lower() == ".csv":
            return read_ilsvrc_kaggle(_find_image_dir(root), ann)
        if ann.is_dir() and (ann / "image_ids.txt").is_file():
            return read_wsol_metadata(ann, root)
        if ann.is_dir() and _has_entry(ann, ".xml"):
            return read_ilsvrc_xml(_find_image_dir(root), ann)
        raise DatasetError(
            f"{ann} is neither LOC_val_solution.csv, a folder of XML files, nor a wsolevaluation split "
            "folder with image_ids.txt; pass one of those."
        )
    for xml_dir in (root / "bbox", root / _KAGGLE_XML_DIR, root / "val", root):
        if _has_entry(xml_dir, ".xml"):
            return read_ilsvrc_xml(_find_image_dir(root), xml_dir)
    wsol = root / "metadata" / "ILSVRC" / "test"
    if (wsol / "image_ids.txt").is_file():
        return read_wsol_metadata(wsol, root)
    if (root / KAGGLE_SOLUTION_NAME).is_file():
        return read_ilsvrc_kaggle(_find_image_dir(root), root / KAGGLE_SOLUTION_NAME)
    raise DatasetError(
        f"no ILSVRC boxes under {root}: expected bbox/*.xml, metadata/ILSVRC/test/ or {KAGGLE_SOLUTION_NAME}; "
        "pass the annotations path explicitly."
    )
