"""The vocabulary the registry and the model wrappers share (no torch needed)."""

from __future__ import annotations

from typing import Any, Literal

from camkit.choices import one_of

CamKind = Literal["exact", "needs-finetune", "gradient"]
"""``exact``: pool + linear head, mean_xy CAM + b == logit. ``needs-finetune``: exact once its new
head is trained. ``gradient``: the head is not pool + linear; gradient/perturbation methods only."""

ForeignNet = Any
"""A third-party network (timm, torchvision, Hugging Face) whose submodules and methods camkit reads by
name (``forward_features``, ``forward_head``, ``get_classifier``, ``patch_embed``, ...). ``nn.Module``
types every such attribute as ``Tensor | Module``, so these reads are untyped; the wrappers check the
structure at run time instead (the head is verified numerically against the network's own forward)."""

PoolKind = Literal["avg", "max"]
"""Global pooling of a CAM head: ``avg`` (GAP, exact CAM) or ``max`` (GMP)."""

POOL_KINDS: tuple[PoolKind, ...] = ("avg", "max")


def pool_kind(pool: str) -> PoolKind:
    """``pool`` checked to be one of :data:`POOL_KINDS` (raises :class:`~camkit.errors.ParameterError`)."""
    return one_of("pool", pool, POOL_KINDS, "a global pooling")

CAM_KIND_TEXT: dict[str, str] = {
    "exact": "exact CAM",
    "needs-finetune": "needs fine-tuning (new GAP head is untrained)",
    "gradient": "gradient CAMs only (head is not pool+linear)",
}
