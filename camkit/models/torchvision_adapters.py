"""Explicit backbone -> pool -> linear decompositions of torchvision classification models.

Each family says how to run the network up to its last feature map and where its linear layer
(and dropout) sit. The forward of the original model is reproduced exactly: a test checks
``CAMModel.head(features(x)) == net(x)`` for every registered model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _resnet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def _googlenet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
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


def _inception3(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net._transform_input(x)
    for name in _INCEPTION3_LAYERS:  # AuxLogits only runs in training and does not feed the head
        x = getattr(net, name)(x)
    return x


def _densenet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu(net.features(x))


def _features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.features(x)


def _regnet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.trunk_output(net.stem(x))


def _shufflenet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.conv1(x))
    return net.conv5(net.stage4(net.stage3(net.stage2(x))))


def _mnasnet(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.layers(x)


def replace_linear(net: nn.Module, path: str, num_classes: int) -> None:
    """Swap the ``nn.Linear`` at dotted ``path`` in ``net`` for a fresh one with ``num_classes`` outputs."""
    parent_path, _, attr = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    new = nn.Linear(net.get_submodule(path).in_features, num_classes)
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)


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
