"""Fine-tuning: train GAP heads (the paper's surgeries), new linear heads and CIFAR-scale GAP nets.

``finetune(FinetuneConfig(...))`` runs the whole recipe (data, adapted model, optimizer and
schedule, validation, atomic checkpoints, CSV log and plot); ``camkit finetune`` is its command
line. The checkpoints load with ``camkit.load_model(None, weights="out/best.pt")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camkit._lazy import lazy_getattr

_LAZY = {
    "FinetuneConfig": ("camkit.finetune.trainer", "FinetuneConfig"),
    "FinetuneResult": ("camkit.finetune.trainer", "FinetuneResult"),
    "finetune": ("camkit.finetune.trainer", "finetune"),
    "prepare_model": ("camkit.finetune.model", "prepare_model"),
    "load_training_data": ("camkit.finetune.data", "load_training_data"),
    "make_photo_dataset": ("camkit.finetune.photos", "make_photo_dataset"),
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    # `X as X`: an explicit re-export for type checkers (the names are served lazily by __getattr__)
    from .data import load_training_data as load_training_data
    from .model import prepare_model as prepare_model
    from .photos import make_photo_dataset as make_photo_dataset
    from .trainer import FinetuneConfig as FinetuneConfig
    from .trainer import FinetuneResult as FinetuneResult
    from .trainer import finetune as finetune


__getattr__ = lazy_getattr("camkit.finetune", _LAZY, globals())
