"""torchvision ConvNeXt, Swin, ViT and MaxViT, each with the CAM its head allows.

- ConvNeXt: ``features -> avgpool -> LayerNorm2d -> flatten -> linear``: exact CAM through the norm
  (:class:`~camkit.models.ln_cam.LayerNormCAMModel`).
- Swin (v1 and v2): ``features -> norm -> permute NHWC->NCHW -> avgpool -> linear``: the norm comes
  before the pool, so the head is pool + linear and the CAM is exact on the normalised map.
- ViT: the class token is classified (``x[:, 0] -> heads``): gradient methods at the last encoder
  block's ``ln_1`` (tokens ``[B, 1 + N, D]``, laid out on the patch grid).
- MaxViT: ``avgpool -> flatten -> LayerNorm -> linear -> tanh -> linear``, an MLP: gradient methods at
  the last block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from ..errors import ParameterError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .classifier_model import ClassifierModel
from .kinds import ForeignNet, PoolKind
from .token_layout import TokenCAMModel, TokenClassifierModel, TokenLayerNormCAMModel, TokenLayout

if TYPE_CHECKING:
    from torchvision.models import ConvNeXt, SwinTransformer

TransformerFamily = Literal["convnext", "swin", "vit", "maxvit"]

TORCHVISION_TRANSFORMERS: dict[str, TransformerFamily] = {
    **{f"convnext_{s}": "convnext" for s in ("tiny", "small", "base", "large")},
    **{f"swin_{s}": "swin" for s in ("t", "s", "b", "v2_t", "v2_s", "v2_b")},
    **{f"vit_{s}": "vit" for s in ("b_16", "b_32", "l_16", "l_32", "h_14")},
    "maxvit_t": "maxvit",
}

FAMILY_TEXT: dict[TransformerFamily, str] = {
    "convnext": "pool -> LayerNorm -> linear: exact CAM through the norm",
    "swin": "norm, then pool -> linear: exact CAM",
    "vit": "class-token head: gradient CAMs at the last block's ln_1",
    "maxvit": "MLP head (pool -> norm -> linear -> tanh -> linear): gradient CAMs at the last block",
}


def _convnext_features(net: ConvNeXt, x: torch.Tensor) -> torch.Tensor:
    return net.features(x)


def _swin_features(net: SwinTransformer, x: torch.Tensor) -> torch.Tensor:
    return net.permute(net.norm(net.features(x)))


def wrap_torchvision_transformer(
    net: ForeignNet,
    family: TransformerFamily,
    *,
    name: str,
    pool: PoolKind | None = None,
    preprocess: Preprocess | None = None,
    categories: list[str] | None = None,
    weights_name: str | None = None,
) -> CAMModel | ClassifierModel:
    """Wrap a torchvision ConvNeXt / Swin / ViT / MaxViT network (any size, random or trained)."""
    meta = dict(name=name, preprocess=preprocess, categories=categories, weights_name=weights_name)
    if family == "convnext":
        return TokenLayerNormCAMModel(net, _convnext_features, "classifier.2", "classifier.0", pool=pool or "avg",
                                      layout=TokenLayout("nchw"), **meta).eval()
    if family == "swin":
        return TokenCAMModel(net, _swin_features, "head", pool=pool or "avg", layout=TokenLayout("nhwc"), **meta).eval()
    if pool not in (None, "avg"):
        raise ParameterError("pool", pool, f"does not apply to {name}: it keeps its own {family} head")
    if family == "vit":
        layout = TokenLayout("tokens", 1, (int(net.patch_size), int(net.patch_size)))
        last = f"encoder.layers.{list(dict(net.encoder.layers.named_children()))[-1]}.ln_1"
        return TokenClassifierModel(net, layout=layout, cam_reason="class-token head", default_layer=last, **meta).eval()
    return TokenClassifierModel(net, layout=TokenLayout("nchw"), cam_reason="MLP head", default_layer=f"blocks.{len(net.blocks) - 1}", **meta).eval()


def build_torchvision_transformer(
    builder: str, weights: str | None = None, num_classes: int | None = None, pool: PoolKind | None = None
) -> CAMModel | ClassifierModel:
    """A torchvision transformer/ConvNeXt by builder name; named/default weights downloaded, or random."""
    import torchvision.models as tvm

    from .linear_head import replace_linear
    from .weights import load_torchvision_pretrained

    family = TORCHVISION_TRANSFORMERS[builder]
    net = tvm.get_model(builder, weights=None)
    enum, preprocess, categories = load_torchvision_pretrained(net, builder, weights)
    if num_classes is not None:
        last = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
        if net.get_submodule(last).out_features != num_classes:
            replace_linear(net, last, int(num_classes))
            categories = None
    return wrap_torchvision_transformer(
        net, family, name=builder, pool=pool, preprocess=preprocess, categories=categories,
        weights_name=str(enum) if enum is not None else "random",
    )
