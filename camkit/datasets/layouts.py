"""Reading a localization dataset by layout name: the one dispatch behind ``camkit evaluate --dataset``,
``camkit sanity --dataset`` and the run viewer's search for a run's photos."""

from __future__ import annotations

from pathlib import Path

from camkit.choices import one_of
from camkit.datasets.csv_boxes import read_csv_boxes
from camkit.datasets.cub import SPLITS, read_cub
from camkit.datasets.ilsvrc import read_ilsvrc
from camkit.datasets.sample import LocDataset
from camkit.datasets.wsol_metadata import read_wsol_metadata
from camkit.errors import DatasetError, ParameterError

__all__ = ["LAYOUTS", "read_layout"]

#: ``ilsvrc`` (XML folder, Kaggle LOC_val_solution.csv or wsolevaluation metadata, auto-detected), ``cub``
#: (CUB_200_2011), ``wsol`` (a wsolevaluation metadata split: CUB, ILSVRC or OpenImages with masks),
#: ``csv`` (one box per row: image_path,class_index,x1,y1,x2,y2).
LAYOUTS = ("ilsvrc", "cub", "wsol", "csv")


def read_layout(kind: str, root: Path, annotations: Path | None = None, split: str | None = None,
                mask_root: Path | None = None) -> LocDataset:
    """The dataset at ``root`` read as layout ``kind`` (one of :data:`LAYOUTS`, any case).

    Args:
        root: the dataset's folder; image paths in the annotations are relative to it.
        annotations: the boxes (XML folder, LOC_val_solution.csv, a wsolevaluation split folder, the CUB
            folder, or the CSV file of ``csv``); None: the layout's default place under ``root``.
        split: ``cub``: test (default), train or all; ``wsol``: the metadata split folder's name (default
            test), used to find it under ``root/metadata/*/`` when ``annotations`` is None.
        mask_root: ``wsol`` with OpenImages masks only: the folder mask paths are relative to (default ``root``).

    Raises :class:`ParameterError` for an unknown layout, a missing folder or a misplaced ``mask_root``, and
    the readers' one-line :class:`DatasetError` for malformed files.
    """
    kind = one_of("kind", kind.lower(), LAYOUTS, "a dataset layout")
    root = Path(root)
    ds = _read(kind, root, annotations, split, mask_root)
    ds.origin = {"kind": kind, "root": str(root.resolve()),
                 "annotations": str(Path(annotations).resolve()) if annotations is not None else None, "split": split}
    return ds


def _read(kind: str, root: Path, annotations: Path | None, split: str | None, mask_root: Path | None) -> LocDataset:
    if not root.is_dir():
        raise ParameterError("root", str(root), "is not a folder; pass the dataset's root folder")
    if mask_root is not None:
        if kind != "wsol":
            raise ParameterError("mask_root", str(mask_root), f"applies to the wsol layout (OpenImages masks), not {kind}; drop it")
        if not Path(mask_root).is_dir():
            raise ParameterError("mask_root", str(mask_root), "is not a folder; pass the folder the mask paths are relative to")
    if kind == "ilsvrc":
        return read_ilsvrc(root, annotations)
    if kind == "cub":
        return read_cub(annotations or root, one_of("split", split or "test", SPLITS, "a CUB split"))
    if kind == "wsol":
        if annotations is None:
            split = split or "test"
            found = sorted(p for p in (root / "metadata").glob(f"*/{split}") if (p / "image_ids.txt").is_file())
            if len(found) != 1:
                what = "no" if not found else f"{len(found)} ({', '.join(p.parent.name for p in found)})"
                raise DatasetError(f"{what} wsolevaluation split folders {root}/metadata/*/{split}; "
                                   "pass the split folder as annotations=FOLDER (e.g. metadata/CUB/test)")
            annotations = found[0]
        return read_wsol_metadata(annotations, root, mask_root)
    if annotations is None:
        raise DatasetError("the csv layout needs its boxes file: pass annotations=CSV (columns image_path,class_index,x1,y1,x2,y2)")
    return read_csv_boxes(annotations, root)
