"""torchvision models whose head is not pool + linear (cam_kind "gradient").

VGG16, VGG16-BN and AlexNet with their original FC heads, MobileNetV3 small/large (pool -> linear ->
hardswish -> dropout -> linear). They are explained by the gradient and perturbation methods at
``features`` (the last spatial map the head consumes: VGG16's pool5 7x7, AlexNet's pool5 6x6,
MobileNetV3's last conv 7x7). ConvNeXt (pool -> LayerNorm -> linear) is exact CAM through its norm:
see :mod:`camkit.models.ln_cam`.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import ParameterError
from .classifier_model import ClassifierModel
from .imagenet import imagenet_categories
from .kinds import PoolKind
from .linear_head import replace_linear
from .registry import ModelSpec, register
from .weights import load_torchvision_pretrained
from .weights_arg import WeightsChoice

GRADIENT_MODELS: dict[str, tuple[str, str]] = {
    "vgg16": ("features", "VGG16 with its original FC head (pool5 7x7 maps)"),
    "vgg16_bn": ("features", "VGG16-BN with its original FC head (pool5 7x7 maps)"),
    "alexnet": ("features", "AlexNet with its original FC head (pool5 6x6 maps)"),
    "mobilenet_v3_small": ("features", "MobileNetV3-Small, head linear-hardswish-linear (7x7 maps)"),
    "mobilenet_v3_large": ("features", "MobileNetV3-Large, head linear-hardswish-linear (7x7 maps)"),
}


def build_gradient_model(
    builder: str, weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None
) -> ClassifierModel:
    """A torchvision classifier with its own head; named/default weights downloaded, or random."""
    import torchvision.models as tvm  # only when such a model is built: keeps import light

    if pool not in (None, "avg"):
        raise ParameterError("pool", pool, f"does not apply to {builder}: it keeps its original head")
    net = tvm.get_model(builder, weights=None)
    enum, preprocess, categories = load_torchvision_pretrained(net, builder, weights)
    if num_classes not in (None, 1000):
        last = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
        replace_linear(net, last, int(num_classes))
        categories = None
    return ClassifierModel(
        net, default_layer=GRADIENT_MODELS[builder][0], name=builder, preprocess=preprocess,
        categories=categories, weights_name=str(enum) if enum is not None else "random",
    ).eval()


for _builder, (_layer, _desc) in GRADIENT_MODELS.items():
    register(ModelSpec(_builder, "torchvision", "gradient", _desc, partial(build_gradient_model, _builder),
                       classes=imagenet_categories))
