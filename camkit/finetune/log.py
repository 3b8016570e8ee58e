"""The training log: one CSV row per epoch and a loss/accuracy plot (PNG).

Columns: ``epoch`` (1-based), ``lr`` (at the end of the epoch), ``train_loss`` (mean cross-entropy
over the epoch's images), ``train_acc`` (top-1, fraction in [0, 1], of the augmented training
images), ``val_loss``, ``val_acc`` (empty when there is no validation set), ``images_per_s``
(training images / wall-clock seconds of the epoch, data loading included), ``seconds``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "seconds")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_log(history: list[dict], path: str | Path) -> Path:
    """Write the whole history (rewritten each epoch, so a resumed run's log stays one table)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for row in history:
            w.writerow([_fmt(row.get(c)) for c in COLUMNS])
    os.replace(tmp, path)
    return path


def read_log(path: str | Path) -> list[dict]:
    """The rows of a log written by :func:`write_log` (numbers as floats, empty cells as None)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Two panels (loss, accuracy) against the epoch, train and validation; saved as a PNG.

    Uses a bare Agg ``Figure`` (not pyplot), so the caller's matplotlib backend and open figures
    (e.g. a notebook's inline plots) are left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_l, ax_a = fig.subplots(1, 2)
    for ax, key, label in ((ax_l, "loss", "cross-entropy loss"), (ax_a, "acc", "top-1 accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label="train")
        val = [r.get(f"val_{key}") for r in history]
        if any(v is not None for v in val):
            ax.plot(epochs, [float("nan") if v is None else v for v in val], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_a.set_ylim(0, 1.02)
    if epochs:
        ax_l.set_xticks(epochs if len(epochs) <= 20 else ax_l.get_xticks())
        ax_a.set_xticks(epochs if len(epochs) <= 20 else ax_a.get_xticks())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
