"""torchvision classification models whose head is global pool -> [dropout] -> one linear layer.

Each architecture family says how to run the network up to its last feature map and where its
linear layer (and dropout) sit. The forward of the original model is reproduced exactly: a test
checks ``CAMModel.head(features(x)) == net(x)`` for every registered model. Named and default
weights are torchvision's ImageNet-1k weights (downloaded to torch's cache); ``<resnet>_dilated`` variants run the last
stage at stride 1 with dilation 2 for 14x14 maps at 224 input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import Preprocess
from .cam_model import CAMModel
from .imagenet import imagenet_categories
from .kinds import PoolKind
from .linear_head import replace_linear
from .registry import ModelSpec, register
from .weights import load_torchvision_pretrained
from .weights_arg import WeightsChoice

if TYPE_CHECKING:  # the families' own classes: their submodules are read by name below
    from torchvision.models import (
        DenseNet,
        EfficientNet,
        GoogLeNet,
        Inception3,
        MNASNet,
        MobileNetV2,
        RegNet,
        ResNet,
        ShuffleNetV2,
    )


def _resnet(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def _googlenet(net: GoogLeNet, x: torch.Tensor) -> torch.Tensor:
    x = net._transform_input(x)
    x = net.maxpool1(net.conv1(x))
    x = net.maxpool2(net.conv3(net.conv2(x)))
    x = net.maxpool3(net.inception3b(net.inception3a(x)))
    for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = getattr(net, name)(x)
    x = net.maxpool4(x)
    return net.inception5b(net.inception5a(x))


_INCEPTION3_LAYERS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)


def _inception3(net: Inception3, x: torch.Tensor) -> torch.Tensor:
    x = net._transform_input(x)
    for name in _INCEPTION3_LAYERS:  # AuxLogits only runs in training and does not feed the head
        x = getattr(net, name)(x)
    return x


def _densenet(net: DenseNet, x: torch.Tensor) -> torch.Tensor:
    return F.relu(net.features(x))


def _features(net: EfficientNet | MobileNetV2, x: torch.Tensor) -> torch.Tensor:
    return net.features(x)


def _regnet(net: RegNet, x: torch.Tensor) -> torch.Tensor:
    return net.trunk_output(net.stem(x))


def _shufflenet(net: ShuffleNetV2, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.conv1(x))
    return net.conv5(net.stage4(net.stage3(net.stage2(x))))


def _mnasnet(net: MNASNet, x: torch.Tensor) -> torch.Tensor:
    return net.layers(x)


@dataclass(frozen=True)
class Family:
    """How a torchvision family decomposes."""

    features_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    classifier_path: str
    dropout_path: str | None


FAMILIES: dict[str, Family] = {
    "resnet": Family(_resnet, "fc", None),
    "googlenet": Family(_googlenet, "fc", "dropout"),
    "inception_v3": Family(_inception3, "fc", "dropout"),
    "densenet": Family(_densenet, "classifier", None),
    "efficientnet": Family(_features, "classifier.1", "classifier.0"),
    "mobilenet_v2": Family(_features, "classifier.1", "classifier.0"),
    "regnet": Family(_regnet, "fc", None),
    "shufflenet": Family(_shufflenet, "fc", None),
    "mnasnet": Family(_mnasnet, "classifier.1", "classifier.0"),
}


def _names(prefix: str, suffixes: str) -> list[str]:
    return [prefix + s for s in suffixes.split()]


# torchvision builder name -> family. Every classification model whose head is pool -> [dropout] -> linear.
TORCHVISION_EXACT: dict[str, str] = {
    **{n: "resnet" for n in _names("resnet", "18 34 50 101 152")},
    **{n: "resnet" for n in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")},
    "googlenet": "googlenet",
    "inception_v3": "inception_v3",
    **{n: "densenet" for n in _names("densenet", "121 161 169 201")},
    **{n: "efficientnet" for n in _names("efficientnet_b", "0 1 2 3 4 5 6 7")},
    **{n: "efficientnet" for n in _names("efficientnet_v2_", "s m l")},
    **{n: "regnet" for n in _names("regnet_x_", "400mf 800mf 1_6gf 3_2gf 8gf 16gf 32gf")},
    **{n: "regnet" for n in _names("regnet_y_", "400mf 800mf 1_6gf 3_2gf 8gf 16gf 32gf 128gf")},
    "mobilenet_v2": "mobilenet_v2",
    **{n: "shufflenet" for n in _names("shufflenet_v2_", "x0_5 x1_0 x1_5 x2_0")},
    **{n: "mnasnet" for n in _names("mnasnet", "0_5 0_75 1_0 1_3")},
}

# Bottleneck ResNets whose last stage can run at stride 1 with dilation 2 (BasicBlock cannot).
DILATABLE = ("resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2")


def build_torchvision(
    builder: str, weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None, dilated: bool = False
) -> CAMModel:
    """A torchvision classification model decomposed by its family; named/default weights downloaded."""
    import torchvision.models as tvm  # only when such a model is built: keeps import light

    family = FAMILIES[TORCHVISION_EXACT[builder]]
    kwargs: dict = {}
    if dilated:
        kwargs["replace_stride_with_dilation"] = [False, False, True]
    pretrained = not weights.is_random
    if builder in ("googlenet", "inception_v3"):
        # As torchvision does for pretrained weights: no aux heads at eval, input re-normalised.
        kwargs.update(aux_logits=False, init_weights=not pretrained, transform_input=pretrained)
    net = tvm.get_model(builder, weights=None, **kwargs)
    enum, preprocess, categories = load_torchvision_pretrained(net, builder, weights, ("AuxLogits.", "aux"))
    if builder == "inception_v3" and enum is None:
        preprocess = Preprocess(resize=342, crop=299)
    if num_classes not in (None, net.get_submodule(family.classifier_path).out_features):
        replace_linear(net, family.classifier_path, int(num_classes))
        categories = None
    return CAMModel(
        net, family.features_fn, family.classifier_path, dropout_path=family.dropout_path, pool=pool or "avg",
        name=builder + ("_dilated" if dilated else ""), preprocess=preprocess, categories=categories,
        weights_name=str(enum) if enum is not None else "random",
    ).eval()


for _builder, _family in TORCHVISION_EXACT.items():
    register(ModelSpec(
        _builder, "torchvision", "exact", f"torchvision {_builder} ({_family} family)",
        partial(build_torchvision, _builder), classes=imagenet_categories,
    ))
for _builder in DILATABLE:
    register(ModelSpec(
        f"{_builder}_dilated", "torchvision", "exact",
        f"torchvision {_builder}, last stage stride 1 dilation 2: 14x14 maps at 224, same weights",
        partial(build_torchvision, _builder, dilated=True), classes=imagenet_categories,
    ))
