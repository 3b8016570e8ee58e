"""The vocabulary the registry and the model wrappers share (no torch needed)."""

from __future__ import annotations

from typing import Literal

CamKind = Literal["exact", "needs-finetune", "gradient"]
"""``exact``: pool + linear head, mean_xy CAM + b == logit. ``needs-finetune``: exact once its new
head is trained. ``gradient``: the head is not pool + linear; gradient/perturbation methods only."""

PoolKind = Literal["avg", "max"]
"""Global pooling of a CAM head: ``avg`` (GAP, exact CAM) or ``max`` (GMP)."""

POOL_KINDS: tuple[str, ...] = ("avg", "max")

CAM_KIND_TEXT: dict[str, str] = {
    "exact": "exact CAM",
    "needs-finetune": "needs fine-tuning (new GAP head is untrained)",
    "gradient": "gradient CAMs only (head is not pool+linear)",
}
