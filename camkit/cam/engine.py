"""The CAM engine: one forward pass -> logits and the class activation maps of any classes.

For a :class:`~camkit.models.CAMModel` with feature map ``F [B, K, h, w]`` and linear layer
``W [C, K], b [C]``, the map of class c is ``M_c = sum_k W[c, k] F_k`` (one einsum for the whole
batch and every selected class), and ``mean_xy M_c + b_c == logit_c`` under average pooling.
No gradients, no hooks: runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ClassSelectionError, UnknownClassError
from ..models.cam_model import CAMModel
from ..resample import upsample

__all__ = ["CAMBatch", "cams_from_features", "compute_cams", "resolve_class", "select_classes", "upsample"]

# What to explain: top-k (int), the same classes for every image (ids and/or names), or one list per image.
ClassSpec = int | Sequence[int | str] | Sequence[Sequence[int | str]] | torch.Tensor


@dataclass
class CAMBatch:
    """Result of :func:`compute_cams` for a batch of B images and k classes each.

    logits ``[B, C]``; probs ``[B, C]`` softmax; class_idx ``[B, k]`` int64; scores ``[B, k]`` softmax
    probabilities of the selected classes; maps ``[B, k, h, w]`` raw CAMs at feature resolution
    (logit units, bias not included); bias ``[B, k]``.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    class_idx: torch.Tensor
    scores: torch.Tensor
    maps: torch.Tensor
    bias: torch.Tensor


def resolve_class(c: int | str, categories: list[str] | None, num_classes: int) -> int:
    """A class id or name -> index; names match case-insensitively (exact, then a unique prefix)."""
    if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.strip().lstrip("-").isdigit()):
        i = int(c)
        if not 0 <= i < num_classes:
            raise ClassSelectionError(f"class index {i} is out of range: the model has classes 0-{num_classes - 1}")
        return i
    if categories is None:
        raise ClassSelectionError(f"class name {c!r} given but the model's weights carry no class names; pass a class index")
    key = c.strip().lower()
    lowered = [n.lower() for n in categories]
    if key in lowered:
        return lowered.index(key)
    starts = [i for i, n in enumerate(lowered) if n.startswith(key)]
    if len(starts) == 1:
        return starts[0]
    import difflib

    close = difflib.get_close_matches(key, lowered, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(categories[lowered.index(m)]) for m in close)}? " if close else ""
    if len(starts) > 1:
        hint = f"it is a prefix of {len(starts)} classes ({', '.join(repr(categories[i]) for i in starts[:3])}, ...); "
    raise UnknownClassError(f"unknown class name {c!r}; {hint}use a name from the model's categories or a class index")


def select_classes(logits: torch.Tensor, classes: ClassSpec, categories: list[str] | None) -> torch.Tensor:
    """Class indices ``[B, k]`` for ``classes`` (see :data:`ClassSpec`); top-k are in descending score."""
    b, n = logits.shape
    if isinstance(classes, bool):
        raise ClassSelectionError(f"classes={classes} is not a class selection; pass a top-k count, class ids or names")
    if isinstance(classes, (int, np.integer)):
        k = max(1, min(int(classes), n))
        return logits.topk(k, dim=1).indices
    if isinstance(classes, torch.Tensor):
        idx = classes.to(torch.int64).reshape(b, -1) if classes.dim() == 2 else classes.to(torch.int64).reshape(1, -1).expand(b, -1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= n):
            raise ClassSelectionError(f"class indices must be in 0-{n - 1}")
        return idx
    items = list(classes)
    lists = [c for c in items if isinstance(c, (list, tuple))]
    if items and len(lists) == len(items):
        if len(lists) != b:
            raise ClassSelectionError(f"{len(lists)} per-image class lists for a batch of {b} images")
        rows = [[resolve_class(c, categories, n) for c in row] for row in lists]
        if len({len(r) for r in rows}) != 1:
            raise ClassSelectionError("per-image class lists must all have the same length")
        return torch.tensor(rows, dtype=torch.int64)
    if not items:
        raise ClassSelectionError("no classes given")
    ids = [c for c in items if isinstance(c, (int, str, np.integer))]
    if len(ids) != len(items):
        raise ClassSelectionError("classes mixes class ids/names with per-image lists; pass one kind")
    row = [resolve_class(c, categories, n) for c in ids]
    return torch.tensor(row, dtype=torch.int64).unsqueeze(0).expand(b, -1)


def cams_from_features(model: CAMModel, features: torch.Tensor, class_idx: torch.Tensor) -> torch.Tensor:
    """Maps ``[B, k, h, w]`` of the classes ``class_idx [B, k]`` from features ``[B, K, h, w]``."""
    w = model.classifier.weight[class_idx]  # [B, k, K]
    return torch.einsum("bkhw,bjk->bjhw", features, w.to(features.dtype))


def compute_cams(model: CAMModel, x: torch.Tensor, classes: ClassSpec = 5) -> CAMBatch:
    """One forward pass of ``x [B, 3, H, W]`` (normalised input) -> logits and maps of ``classes``."""
    with torch.inference_mode():
        feats = model.features(x)
        logits = model.head(feats)
        idx = select_classes(logits, classes, model.categories).to(logits.device)
        maps = cams_from_features(model, feats, idx)
        probs = logits.float().softmax(dim=1)
        bias = model.cam_bias
        bias_sel = bias[idx] if bias is not None else torch.zeros(idx.shape, dtype=maps.dtype, device=maps.device)
        return CAMBatch(logits, probs, idx, probs.gather(1, idx), maps, bias_sel)
