"""A CNN decomposed explicitly into backbone -> global pool -> [dropout] -> one linear layer.

This is the shape for which the class activation map is exact (Zhou et al., CVPR 2016):

    logits = W @ pool(F) + b,   F = features(x) of shape [B, K, h, w]
    M_c(x, y) = sum_k W[c, k] F_k(x, y)
    mean_xy M_c + b_c == logit_c          (global average pooling)

The wrapped network keeps its own module names under ``net.`` (so torchvision/timm state dicts
load with a ``net.`` prefix); ``features`` runs it up to the last feature map (the network's own
``forward_features`` when it has one, as timm's and camkit's networks do), ``head`` applies the pool
and the classifier. No hooks are involved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from ..preprocess import Preprocess
from .kinds import CamKind, ForeignNet, PoolKind, pool_kind

__all__ = ["CAMModel", "CamKind", "PoolKind"]

FeaturesFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _forward_features(net: ForeignNet, x: torch.Tensor) -> torch.Tensor:
    return net.forward_features(x)


class CAMModel(nn.Module):
    """A classifier with an explicit CAM decomposition.

    Args:
        net: the network; its parameters are this module's (under ``net.``).
        features_fn: ``features_fn(net, x) -> F`` with x ``[B, 3, H, W]`` normalised input and F
            ``[B, K, h, w]`` the last feature map (after any final activation the head sees);
            None: ``net.forward_features(x)``.
        classifier_path: dotted name of the ``nn.Linear`` inside ``net`` (``"fc"``, ``"classifier.1"``).
        dropout_path: dotted name of the dropout between pool and linear, if any (active in training);
            without one, a ``net.drop_rate`` attribute (timm convention) gives functional dropout.
        pool: ``"avg"`` (GAP: the CAM is exact) or ``"max"`` (GMP: the logit is
            ``W @ max_xy F + b``; maps are still ``W @ F`` as in the paper's GMP comparison).
        name, preprocess, categories, cam_kind: metadata the CLI and API report.
    """

    def __init__(
        self,
        net: nn.Module,
        features_fn: FeaturesFn | None,
        classifier_path: str,
        *,
        dropout_path: str | None = None,
        pool: PoolKind = "avg",
        name: str = "model",
        preprocess: Preprocess | None = None,
        categories: list[str] | None = None,
        cam_kind: CamKind = "exact",
        weights_name: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        if features_fn is None and not callable(getattr(net, "forward_features", None)):
            raise TypeError(f"{type(net).__name__} has no forward_features: pass features_fn")
        self._features_fn: FeaturesFn = features_fn or _forward_features
        self.classifier_path = classifier_path
        self.dropout_path = dropout_path
        if not isinstance(self.classifier, nn.Linear):
            raise TypeError(f"{classifier_path} is {type(self.classifier).__name__}, not nn.Linear")
        self.pool = pool_kind(pool)
        self.name = name
        self.preprocess = preprocess or Preprocess()
        self.categories = categories
        self.cam_kind = cam_kind
        self.weights_name = weights_name

    @property
    def classifier(self) -> nn.Linear:
        return cast(nn.Linear, self.net.get_submodule(self.classifier_path))  # checked in __init__

    @property
    def cam_bias(self) -> torch.Tensor | None:
        """The constant of the decomposition ``[C]`` (``mean_xy M_c + cam_bias[c] == logit_c`` under GAP):
        the classifier's bias here; heads with a norm after the pool add to it (see ``ln_cam``)."""
        return self.classifier.bias

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def num_features(self) -> int:
        return self.classifier.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map ``[B, K, h, w]`` for normalised input ``[B, 3, H, W]``."""
        return self._features_fn(self.net, x)

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        """Global pool ``[B, K, h, w] -> [B, K]``."""
        return f.mean(dim=(2, 3)) if self.pool == "avg" else f.amax(dim=(2, 3))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from the feature map (dropout is the identity in eval mode)."""
        p = self.pooled(f)
        # timm-style heads (and camkit's Lite0) apply functional dropout at rate net.drop_rate.
        drop_rate = float(getattr(self.net, "drop_rate", 0.0) or 0.0)
        if self.dropout_path is not None:
            p = self.net.get_submodule(self.dropout_path)(p)
        elif self.training and drop_rate > 0:
            p = torch.nn.functional.dropout(p, drop_rate, training=True)
        return self.classifier(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pool={self.pool}, cam_kind={self.cam_kind}, classes={self.num_classes}"
