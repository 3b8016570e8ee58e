"""Exact CAM through a LayerNorm (or RMSNorm) applied after global average pooling.

Heads of the form ``average-pool -> norm -> [dropout] -> linear`` (ConvNeXt in torchvision and timm,
timm ViT/BEiT/EVA with ``global_pool='avg'`` and ``fc_norm``, Hugging Face ConvNeXt/BEiT poolers)
are not pool + linear, yet they still have an exact class activation map.

Derivation. Let ``F [K, h, w]`` be the last feature map (or the patch tokens laid out on their grid),
``p = mean_xy F`` the pooled vector, and the norm over the K channels

    mu    = (1/K) sum_k p_k                       (LayerNorm; 0 for RMSNorm)
    sigma = sqrt((1/K) sum_k (p_k - mu)^2 + eps)   (eps inside the square root, as torch computes it)
    LN(p)_k = gamma_k (p_k - mu) / sigma + beta_k
    logit_c = sum_k W[c, k] LN(p)_k + b_c

mu and sigma are two scalars per image. Holding them fixed, define the normalised map

    Fn_k(x, y) = gamma_k (F_k(x, y) - mu) / sigma

Because mean_xy is linear and mu, sigma do not depend on (x, y),
``mean_xy Fn_k = gamma_k (p_k - mu) / sigma = LN(p)_k - beta_k``. Hence with

    M_c(x, y) = sum_k W[c, k] Fn_k(x, y) = sum_k W[c, k] gamma_k (F_k(x, y) - mu) / sigma

we get ``mean_xy M_c + (W beta + b)_c = sum_k W[c, k] LN(p)_k + b_c = logit_c`` exactly: the map is
linear in F given the image's two statistics, and the constant ``W beta + b`` plays the role the
bias plays in the original CAM (Zhou et al., CVPR 2016). RMSNorm is the case mu = 0 and
``sigma = sqrt(mean_k p_k^2 + eps)``.

:class:`LayerNormCAMModel` returns ``Fn`` from :meth:`~LayerNormCAMModel.features`, so the CAM
engine's ``M_c = sum_k W[c, k] Fn_k`` with the model's own linear layer is this exact map; the
constant of the decomposition is :attr:`~LayerNormCAMModel.cam_bias` (``W beta + b``), not the
linear layer's bias alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..errors import ModelError, ParameterError
from ..preprocess import Preprocess
from .cam_model import CamKind, CAMModel

NormKind = Literal["layernorm", "rmsnorm"]


def norm_kind(norm: nn.Module) -> NormKind:
    """``"layernorm"`` (centred) or ``"rmsnorm"`` (not centred) for a channel norm module.

    Accepts ``nn.LayerNorm`` and its subclasses (torchvision's and timm's ``LayerNorm2d``, which
    normalise ``[B, C, 1, 1]`` over C), and RMS norms (``nn.RMSNorm``, timm ``RmsNorm``); anything
    else raises :class:`ModelError`.
    """
    if isinstance(norm, nn.LayerNorm):
        return "layernorm"
    if "rmsnorm" in type(norm).__name__.lower():
        return "rmsnorm"
    raise ModelError(f"{type(norm).__name__} after the pool is not a LayerNorm or RMSNorm, so the head has no exact CAM; use a gradient method")


class LayerNormCAMModel(CAMModel):
    """A classifier ``mean_xy -> norm -> [dropout] -> linear`` with its exact CAM (see the module doc).

    Args:
        net: the network (parameters under ``net.``, as in :class:`CAMModel`).
        features_fn: ``features_fn(net, x) -> F [B, K, h, w]``, the map the head averages (raw, before
            the norm).
        classifier_path: dotted name of the ``nn.Linear`` in ``net``.
        norm_path: dotted name of the norm between pool and linear (LayerNorm/LayerNorm2d/RMSNorm over K).
        dropout_path, name, preprocess, categories, cam_kind, weights_name: as in :class:`CAMModel`.

    :meth:`features` returns the normalised map ``Fn [B, K, h, w]``; :meth:`raw_features` the map
    before it; :meth:`head` maps ``Fn`` to the network's logits. Only average pooling is exact.
    """

    def __init__(
        self,
        net: nn.Module,
        features_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        classifier_path: str,
        norm_path: str,
        *,
        dropout_path: str | None = None,
        pool: str = "avg",
        name: str = "model",
        preprocess: Preprocess | None = None,
        categories: list[str] | None = None,
        cam_kind: CamKind = "exact",
        weights_name: str | None = None,
    ) -> None:
        if pool != "avg":
            raise ParameterError("pool", pool, f"does not apply to {name}: its head averages before a LayerNorm; only 'avg' keeps the CAM exact")
        super().__init__(
            net, features_fn, classifier_path, dropout_path=dropout_path, pool="avg", name=name,
            preprocess=preprocess, categories=categories, cam_kind=cam_kind, weights_name=weights_name,
        )
        self.norm_path = norm_path
        self.norm_kind = norm_kind(self.norm)
        k = self.num_features
        for what, t in (("weight", self._gamma()), ("bias", self._beta())):
            if t is not None and t.numel() != k:
                raise ModelError(f"{norm_path}.{what} has {t.numel()} values but the linear layer takes {k} features")

    @property
    def norm(self) -> nn.Module:
        return self.net.get_submodule(self.norm_path)

    def _gamma(self) -> torch.Tensor | None:
        return getattr(self.norm, "weight", None)

    def _beta(self) -> torch.Tensor | None:
        return getattr(self.norm, "bias", None)

    def _eps(self, dtype: torch.dtype) -> float:
        eps = getattr(self.norm, "eps", None)
        return float(torch.finfo(dtype).eps) if eps is None else float(eps)

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The map the head averages, ``[B, K, h, w]``, before the norm."""
        return self._features_fn(self.net, x)

    def norm_stats(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)``, each ``[B, 1, 1, 1]``: the norm's mean and scale of the pooled ``f [B, K, h, w]``."""
        p = f.mean(dim=(2, 3), keepdim=True)
        if self.norm_kind == "layernorm":
            mu = p.mean(dim=1, keepdim=True)
            var = (p - mu).square().mean(dim=1, keepdim=True)
        else:
            mu = torch.zeros_like(p[:, :1])
            var = p.square().mean(dim=1, keepdim=True)
        return mu, torch.sqrt(var + self._eps(f.dtype))

    def normalise(self, f: torch.Tensor) -> torch.Tensor:
        """``Fn = gamma (F - mu) / sigma`` ``[B, K, h, w]`` with the image's pooled statistics."""
        mu, sigma = self.norm_stats(f)
        out = (f - mu) / sigma
        gamma = self._gamma()
        return out if gamma is None else out * gamma.to(f.dtype).reshape(1, -1, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised map ``Fn [B, K, h, w]`` whose CAM ``W @ Fn`` is exact."""
        return self.normalise(self.raw_features(x))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from ``Fn``: ``linear(dropout(mean_xy Fn + beta))``, the network's own head."""
        p = f.mean(dim=(2, 3))
        beta = self._beta()
        if beta is not None:
            p = p + beta.to(p.dtype)
        if self.dropout_path is not None:
            p = self.net.get_submodule(self.dropout_path)(p)
        return self.classifier(p)

    @property
    def cam_bias(self) -> torch.Tensor:
        """``W beta + b`` ``[C]``: the constant with ``mean_xy M_c + cam_bias[c] == logit_c``."""
        clf = self.classifier
        beta = self._beta()
        out = clf.bias if clf.bias is not None else torch.zeros(clf.out_features, dtype=clf.weight.dtype, device=clf.weight.device)
        return out if beta is None else out + clf.weight @ beta.to(clf.weight.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm_path!r} ({self.norm_kind})"
