"""Find the photos of an evaluation run: the dataset it read, checked against the run's fingerprint.

Run folders store image ids, not file paths. The dataset is read again with camkit's readers, from
(in order) what ``summary.json``'s ``dataset`` records (``kind``/``root``/``annotations`` when present),
the folder and layout given by the caller, or the absolute paths named in the dataset's ``source``
and their parents. A candidate is accepted only when its first ``n_images`` samples give the run's
``ids_sha1`` (the same digest ``camkit evaluate`` stores to guard ``--resume``), so a wrong folder is
never shown as the run's photos.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from camkit.app.rundir import RunDir
from camkit.datasets.layouts import LAYOUTS, read_layout
from camkit.errors import CamkitError, DatasetError

__all__ = ["dataset_digest", "locate_images"]



def dataset_digest(samples) -> str:
    """SHA-1 over ``image_id``, class and boxes of each sample (and mask paths when present), as the
    run fingerprint in ``run.json`` (``ids_sha1``)."""
    h = hashlib.sha1()
    for s in samples:
        h.update(f"{s.image_id}\t{s.class_index}\t{s.boxes.tolist()}\n".encode())
        if s.mask_paths:
            h.update(f"masks\t{[str(m) for m in s.mask_paths]}\t{s.ignore_path}\n".encode())
    return h.hexdigest()


def _guess_kinds(name: str) -> list[str]:
    n = name.lower()
    order = [k for k, key in (("ilsvrc", "ilsvrc"), ("cub", "cub"), ("wsol", "wsol"), ("csv", "csv")) if key in n]
    return order + [k for k in LAYOUTS if k not in order]


def _guess_roots(source: str) -> list[Path]:
    roots: list[Path] = []
    for m in re.findall(r"(/[^\s,;()'\"]+)", source):
        p = Path(m)
        for cand in [p, *list(p.parents)[:3]]:
            if cand.is_dir() and cand not in roots and cand != Path("/"):
                roots.append(cand)
    return roots


def locate_images(
    run: RunDir,
    root: str | Path | None = None,
    kind: str | None = None,
    annotations: str | Path | None = None,
    split: str | None = None,
) -> dict[str, Path]:
    """image id -> photo path for ``run``; raises DatasetError (one line) when no candidate matches."""
    ds = run.dataset
    want = ds.get("ids_sha1") or run.run.get("ids_sha1")
    n = int(ds.get("n_images") or run.run.get("n_images") or len(run.records))
    candidates: list[tuple[str, Path, Path | None, str | None]] = []
    if root is None and ds.get("root") and ds.get("kind"):  # where the run read them (a root given overrides it)
        ann = Path(ds["annotations"]) if ds.get("annotations") else None
        candidates.append((str(ds["kind"]), Path(ds["root"]), ann, ds.get("split")))
    kinds = [kind] if kind else _guess_kinds(str(ds.get("name", "")))
    ann = Path(annotations) if annotations is not None else None
    roots = [Path(root)] if root is not None else _guess_roots(str(ds.get("source", "")))
    candidates += [(k, r, ann, split) for r in roots for k in kinds]
    tried = []
    for k, r, a, sp in candidates:
        try:
            found = read_layout(k, r, a, sp)
        except (CamkitError, OSError, ValueError):
            tried.append(f"{k}:{r}")
            continue
        samples = list(found.samples[:n])
        if want is None or dataset_digest(samples) == want:
            return {str(s.image_id): Path(s.image_path) for s in samples}
        tried.append(f"{k}:{r} (other images)")
    where = f" (tried {', '.join(tried[:4])})" if tried else ""
    raise DatasetError(f"cannot find the photos of {run.path}{where}; pass the dataset folder it evaluated as root (and its kind as dataset)")
