"""CIFAR-scale networks with an exact CAM head (global pool -> [dropout] -> one linear layer).

32x32 input with CIFAR-10 normalisation, random initialisation (there are no published weights:
train them with ``camkit finetune --dataset cifar10``, then load the checkpoint with
``load_model(name, weights=PATH)``). Each network has timm's entry points: ``forward_features``
returns the last feature map the head pools, ``forward_head`` pools it (``net.pool``: avg or max)
and applies the classifier ``net.fc`` (``Linear(K, num_classes)``).

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

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .kinds import PoolKind
from .linear_head import PoolLinearNet
from .registry import ModelSpec, register
from .weights_arg import WeightsChoice

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


CIFAR_PREPROCESS = Preprocess(resize=32, crop=32, interpolation="bilinear", mean=CIFAR10_MEAN, std=CIFAR10_STD)


def cifar_preprocess() -> Preprocess:
    """The CIFAR networks' input transform: 32x32, bilinear, CIFAR-10 mean/std."""
    return CIFAR_PREPROCESS


class CifarVGG(PoolLinearNet):
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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def cifar_vgg16_bn(num_classes: int = 10) -> CifarVGG:
    return CifarVGG(num_classes, VGG16_CONVS)


class CifarResNet(PoolLinearNet):
    """torchvision's ResNet with the CIFAR stem: conv1 3x3 stride 1 pad 1, no max-pool.

    Module names (and state-dict keys) are torchvision's ResNet's: ``conv1``, ``bn1``,
    ``layer1``-``layer4``, ``fc``.
    """

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        import torchvision.models as tvm  # only when a CIFAR ResNet is built: keeps import light

        builder = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50}[depth]
        base = builder(weights=None, num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu = base.bn1, base.relu
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        self.fc = base.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def cifar_resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet-18/34/50 (see :class:`CifarResNet`)."""
    return CifarResNet(depth, num_classes)


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


class WideResNet(PoolLinearNet):
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
        for g, stride in enumerate((1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(c_in, widths[g + 1], stride if i == 0 else 1, dropout))
                c_in = widths[g + 1]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        _init_convs(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn(x))


# ---------------------------------------------------------------- registration


def build_cifar(arch: str, weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None,
                dropout: float = 0.0) -> CAMModel:
    """A CIFAR network, random init (default or random weights; checkpoints go through load_model)."""
    if weights.kind == "named":
        raise WeightsError(
            f"{arch} has no published weights ({weights.name!r}); train it with camkit finetune, "
            "then pass weights=PATH to the checkpoint"
        )
    n = num_classes or 10
    if arch == "cifar_vgg16_bn_gap":
        net: PoolLinearNet = cifar_vgg16_bn(n)
    elif arch == "cifar_resnet18":
        net = cifar_resnet(18, n)
    elif arch == "cifar_resnet50":
        net = cifar_resnet(50, n)
    elif arch == "wrn_40_2":
        net = WideResNet(40, 2, dropout, n)
    else:  # pragma: no cover - only registered names reach here
        raise ValueError(arch)
    net.pool = pool or "avg"
    return CAMModel(
        net, None, "fc", pool=net.pool, name=arch, preprocess=cifar_preprocess(),
        categories=list(CIFAR10_CLASSES) if n == 10 else None, cam_kind="exact", weights_name="random",
    ).eval()


for _name, _desc in (
    ("cifar_vgg16_bn_gap", "CIFAR VGG16-BN, pool5 dropped, GAP + linear: 2x2 maps at 32 input (14.7M params)"),
    ("cifar_resnet18", "CIFAR ResNet-18 (3x3 stem, no max-pool), GAP after layer4: 4x4 maps (11.2M params)"),
    ("cifar_resnet50", "CIFAR ResNet-50 'layer4' variant (3x3 stem, no max-pool), GAP after layer4: 4x4 maps (23.5M)"),
    ("wrn_40_2", "Wide ResNet 40-2 (Zagoruyko & Komodakis 2016), GAP over 8x8 maps (2.2M params)"),
):
    register(ModelSpec(_name, "camkit", "exact", _desc + "; random init, train with camkit finetune",
                       partial(build_cifar, _name), default_weights="random",
                       classes=lambda: list(CIFAR10_CLASSES)))
