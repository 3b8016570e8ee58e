"""Token layouts of vision transformers, and the models that carry them.

A transformer's activations are not ``[B, C, h, w]`` maps:

- ViT/DeiT/BEiT/EVA (timm, torchvision, Hugging Face) give tokens ``[B, N, D]``: first the prefix
  tokens (class token, DeiT's distillation token, register tokens), then the ``gh * gw`` patch tokens
  in row-major order, where ``(gh, gw)`` is the input size divided by the model's patch size;
- Swin (timm, torchvision) gives channels-last maps ``[B, H, W, C]``.

:class:`TokenLayout` turns either into ``[B, C, gh, gw]`` (prefix tokens dropped) with differentiable
tensor ops, so gradient methods can use it on a captured activation. The models below record the
spatial size of the last input they saw, which fixes the patch grid of token activations, and expose
``reshape_activations(a) -> [B, C, h, w]`` for the CAM methods' hooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ModelError
from .cam_model import CAMModel
from .classifier_model import ClassifierModel
from .ln_cam import LayerNormCAMModel

LayoutKind = Literal["tokens", "nhwc", "nchw"]


@dataclass(frozen=True)
class TokenLayout:
    """How a family lays out its activations.

    kind: ``"tokens"`` (``[B, N, D]``, prefix tokens then patches row-major), ``"nhwc"`` (Swin) or
        ``"nchw"`` (already a map).
    prefix_tokens: tokens before the patches (class, distillation, register tokens).
    patch_size: ``(ph, pw)`` pixels per patch (tokens only).
    """

    kind: LayoutKind
    prefix_tokens: int = 0
    patch_size: tuple[int, int] = (16, 16)

    def grid(self, n_patches: int, input_hw: tuple[int, int] | None) -> tuple[int, int]:
        """Patch grid ``(gh, gw)`` for ``n_patches`` tokens of an input ``(H, W)``.

        ``H / ph`` rounded down (patch embedding without padding) or up (timm's ``dynamic_img_pad``);
        with no input size known, a square grid.
        """
        if input_hw is not None:
            h, w = input_hw
            ph, pw = self.patch_size
            for gh, gw in ((h // ph, w // pw), (math.ceil(h / ph), math.ceil(w / pw))):
                if gh * gw == n_patches:
                    return gh, gw
        side = math.isqrt(n_patches)
        if side * side == n_patches and input_hw is None:
            return side, side
        raise ModelError(
            f"{n_patches} patch tokens do not form the grid of a {input_hw} input with {self.patch_size} patches "
            f"and {self.prefix_tokens} prefix tokens; the target layer may not be a token layer of this model"
        )

    def to_map(self, a: torch.Tensor, input_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``[B, C, gh, gw]`` from an activation in this layout (differentiable; 4-D NCHW passes through)."""
        if self.kind == "nhwc" and a.dim() == 4:
            return a.permute(0, 3, 1, 2)
        if a.dim() == 4:
            return a
        if a.dim() != 3:
            raise ModelError(f"a {a.dim()}-D activation is neither tokens [B, N, D] nor a map [B, C, h, w]")
        patches = a[:, self.prefix_tokens :]
        gh, gw = self.grid(int(patches.shape[1]), input_hw)
        return patches.transpose(1, 2).reshape(a.shape[0], a.shape[2], gh, gw)


class _RecordsInputSize:
    """Mixin: remembers the ``(H, W)`` of the last forward's input; ``reshape_activations`` uses it.

    The size is stored on the module, so one model should not run two differently sized inputs
    concurrently from several threads.
    """

    layout: TokenLayout
    _input_hw: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        return super().forward(x)  # type: ignore[misc]  # a mixin: the next class in the MRO (a CAM model) has forward

    def reshape_activations(self, a: torch.Tensor) -> torch.Tensor:
        """A target layer's output in this model's layout -> ``[B, C, h, w]`` (prefix tokens dropped)."""
        return self.layout.to_map(a, self._input_hw)


class TokenCAMModel(_RecordsInputSize, CAMModel):
    """A :class:`CAMModel` over a transformer (the patch tokens or the Swin map are its features)."""

    def __init__(self, *args, layout: TokenLayout, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.layout = layout


class TokenLayerNormCAMModel(_RecordsInputSize, LayerNormCAMModel):
    """A :class:`~camkit.models.ln_cam.LayerNormCAMModel` over a transformer (pool -> LayerNorm -> linear)."""

    def __init__(self, *args, layout: TokenLayout, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.layout = layout


class TokenClassifierModel(_RecordsInputSize, ClassifierModel):
    """A transformer whose head has no exact CAM (class token, attention pooling, MLP head).

    Gradient methods explain it at ``default_layer`` through ``reshape_activations``; ``cam_reason``
    says why plain CAM does not apply.
    """

    def __init__(self, net: nn.Module, *, layout: TokenLayout, cam_reason: str, **kwargs) -> None:
        super().__init__(net, **kwargs)
        self.layout = layout
        self.cam_reason = cam_reason


def tokens_features(forward_tokens, layout: TokenLayout):
    """A ``features_fn(net, x)`` that lays out ``forward_tokens(net, x)`` as ``[B, C, gh, gw]``."""

    def features_fn(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layout.to_map(forward_tokens(net, x), (int(x.shape[-2]), int(x.shape[-1])))

    return features_fn
