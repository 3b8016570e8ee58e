"""Linear heads: swapping a network's classifier for a new class count, and the pool -> linear head
of camkit's own networks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .kinds import PoolKind


def replace_linear(net: nn.Module, path: str, num_classes: int,
                   init: Callable[[nn.Linear], None] | None = None) -> nn.Linear:
    """Put a fresh ``nn.Linear`` with ``num_classes`` outputs at dotted ``path`` in ``net``; returns it.

    The new layer keeps the old one's input size and whether it has a bias. ``init(layer)``, when
    given, re-initialises it (otherwise torch's default initialisation). ``path`` may end in an index
    (``"classifier.1"``) for layers inside an ``nn.Sequential``.
    """
    old = net.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{path} is {type(old).__name__}, not nn.Linear")
    new = nn.Linear(old.in_features, int(num_classes), bias=old.bias is not None)
    if init is not None:
        init(new)
    net.set_submodule(path, new)
    return new


class PoolLinearNet(nn.Module):
    """A network whose head is global pool -> [dropout] -> ``self.fc`` (timm-style entry points).

    Subclasses define :meth:`forward_features` (``[B, 3, H, W]`` -> ``[B, K, h, w]``) and set
    ``self.fc`` (``Linear(K, num_classes)``); ``self.pool`` is ``"avg"`` (GAP) or ``"max"`` (GMP) and
    ``self.drop_rate`` the dropout before ``fc`` (active in training only).
    """

    pool: PoolKind = "avg"
    drop_rate: float = 0.0
    fc: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, K, h, w]`` -> logits ``[B, num_classes]`` (or the pooled ``[B, K]`` with ``pre_logits``)."""
        x = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
