"""CIFAR-scale networks with an exact CAM head (global pool -> [dropout] -> one linear layer).

32x32 input, random initialisation (there are no pretrained weights: train them with
``camkit finetune --dataset cifar10``). Each ``features(net, x)`` returns the last feature map the
head pools; the classifier is ``net.fc`` (``Linear(K, num_classes)``).

- :func:`cifar_vgg16_bn`: VGG16 with batch norm (13 conv3x3-BN-ReLU), the paper's GAP surgery rule
  (pool5 dropped, nothing after conv5_3 but GAP + linear): 512 x 2x2 maps at 32 input.
  14,728,266 parameters for 10 classes (the count of the common CIFAR VGG16: 14.7M).
- :func:`cifar_resnet`: torchvision ResNet-18/-50 with a CIFAR stem (conv 3x3 stride 1, no max-pool),
  GAP after ``layer4``: 4x4 maps (512 / 2048 channels). 11,173,962 / 23,520,842 parameters for 10
  classes (the usual CIFAR ResNet-18 "11.2M" and ResNet-50 "23.5M").
- :class:`WideResNet`: Zagoruyko & Komodakis (BMVC 2016), pre-activation basic blocks, depth 6n+4,
  widths 16, 16k, 32k, 64k, dropout between the two convs of a block: 8x8 maps. WRN-40-2 has
  2,243,546 parameters for 10 classes (the paper's table: 2.2M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-pixel std of the 50,000 training images

VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _init_convs(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class CifarVGG(nn.Module):
    """VGG with batch norm for 32x32 input; ``features`` ends at the last conv's ReLU (no pool5)."""

    def __init__(self, num_classes: int = 10, config=VGG16_CONVS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        _init_convs(self)


def cifar_vgg16_bn(num_classes: int = 10) -> CifarVGG:
    return CifarVGG(num_classes, VGG16_CONVS)


def vgg_features(net: CifarVGG, x: torch.Tensor) -> torch.Tensor:
    return net.features(x)


def cifar_resnet(depth: int, num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-18/34/50 with the CIFAR stem: conv1 3x3 stride 1 pad 1, max-pool removed."""
    import torchvision.models as tvm

    builder = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50}[depth]
    net = builder(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    return net


def resnet_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.relu(net.bn1(net.conv1(x)))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


class WideBasic(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3, plus the shortcut.

    When the width or stride changes, the shortcut is a 1x1 conv applied to the pre-activated input
    (as in the authors' code); otherwise it is the identity on the raw input.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = F.relu(self.bn2(y))
        if self.dropout > 0:
            y = F.dropout(y, p=self.dropout, training=self.training)
        y = self.conv2(y)
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-depth-k for 32x32 input: conv3x3(16), three groups of n = (depth-4)/6 blocks of widths
    16k, 32k, 64k (strides 1, 2, 2), BN-ReLU, GAP over 8x8, linear."""

    def __init__(self, depth: int = 40, widen: int = 2, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        groups = []
        c_in = widths[0]
        for g, stride in zip(range(3), (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(c_in, widths[g + 1], stride if i == 0 else 1, dropout))
                c_in = widths[g + 1]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        _init_convs(self)


def wrn_features(net: WideResNet, x: torch.Tensor) -> torch.Tensor:
    x = net.block3(net.block2(net.block1(net.conv1(x))))
    return F.relu(net.bn(x))
