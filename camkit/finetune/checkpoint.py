"""camkit training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

Format (a dict of tensors and plain Python values only, so no pickled code is ever needed):

- ``camkit_checkpoint`` (int format version), ``model`` (registry name), ``num_classes``,
  ``pool`` ("avg"/"max"), ``state_dict`` (the CAMModel's, keys ``net.*``), ``class_names``
  (list or None), ``preprocess`` (:meth:`Preprocess.to_dict`) — what ``camkit.load_model(None,
  weights=path)`` reads, so ``camkit explain/evaluate --weights ckpt.pt`` needs no other flag;
- for resuming a run: ``optimizer`` and ``scheduler`` state dicts, ``epoch`` (epochs completed),
  ``rng`` (torch CPU/CUDA generator states as uint8 tensors, numpy's MT19937 state as a tensor plus
  ints, Python's ``random`` state as a list of ints), ``config`` (the training options),
  ``history`` (per-epoch metrics) and ``best_val_acc``.

Writing: to a temporary file in the destination folder, flushed and fsync'ed, then ``os.replace``
(atomic on POSIX and Windows): a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same folder + fsync + replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (directories cannot be opened on Windows)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def rng_state() -> dict[str, Any]:
    """All generator states, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(py[0]), "state": [int(v) for v in py[1]], "gauss": py[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model,
    model_name: str,
    *,
    optimizer=None,
    scheduler=None,
    epoch: int = 0,
    config: dict | None = None,
    history: list[dict] | None = None,
    best_val_acc: float | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a :class:`~camkit.models.CAMModel` (see the module doc for the keys)."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return {
        "camkit_checkpoint": FORMAT_VERSION,
        "model": model_name,
        "num_classes": int(model.num_classes),
        "pool": model.pool,
        "state_dict": sd,
        "class_names": list(model.categories) if model.categories else None,
        "preprocess": model.preprocess.to_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "rng": rng_state(),
        "config": dict(config or {}),
        "history": list(history or []),
        "best_val_acc": None if best_val_acc is None else float(best_val_acc),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded safely (``weights_only=True``) onto the CPU."""
    from ..models.weights import load_checkpoint

    return load_checkpoint(path)
