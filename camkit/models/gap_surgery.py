"""The CAM paper's head surgery: cut a network, add a 3x3 conv of 1024 units, global pooling, linear.

Zhou et al. (CVPR 2016) §3: "we remove the fully-connected layers before the final output and
replace them with GAP followed by a fully-connected softmax layer" with an added conv layer:

- VGG16-GAP: layers after conv5_3 removed (pool5, fc6-8) -> 14x14 maps at 224 input.
- GoogLeNet-GAP: layers after inception4e removed -> 14x14 maps.
- AlexNet-GAP: layers after conv5 removed -> 13x13 maps.

Each gets ``conv 3x3, 1024, stride 1, pad 1 + ReLU -> global avg (or max) pool -> linear``. The new
layers are untrained: the model is only useful for CAMs after fine-tuning (``camkit.finetune``).
Backbone key names are torchvision's, so torchvision's ImageNet weights load into the backbone
directly. The networks have timm's entry points: ``forward_features`` (through the CAM conv),
``forward_head`` (pool -> ``fc``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..preprocess import Preprocess
from .cam_model import CAMModel
from .kinds import PoolKind
from .linear_head import PoolLinearNet
from .registry import ModelSpec, register
from .weights import download_state_dict, preprocess_of, torchvision_weights
from .weights_arg import WeightsChoice

if TYPE_CHECKING:
    from torchvision.models import VGG, AlexNet

CAM_CONV_CHANNELS = 1024


def _cam_conv(in_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, CAM_CONV_CHANNELS, kernel_size=3, stride=1, padding=1, bias=True)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def _linear(num_classes: int) -> nn.Linear:
    fc = nn.Linear(CAM_CONV_CHANNELS, num_classes)
    nn.init.normal_(fc.weight, 0.0, 0.01)
    nn.init.zeros_(fc.bias)
    return fc


class _CutFeaturesGAP(PoolLinearNet):
    """A ``features`` Sequential cut before pool5, then the CAM conv and a new linear layer."""

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int) -> None:
        super().__init__()
        # The last module of torchvision's VGG/AlexNet ``features`` is pool5: dropped to keep 14x14 (13x13) maps.
        self.features = nn.Sequential(*list(features.children())[:-1])
        self.cam_conv = _cam_conv(channels)
        self.fc = _linear(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_conv(self.features(x))


class VGGGAP(_CutFeaturesGAP):
    """VGG ``features`` through conv5_3+ReLU, then the CAM conv and a new linear layer."""

    def __init__(self, vgg: VGG, num_classes: int) -> None:
        super().__init__(vgg.features, 512, num_classes)


class AlexNetGAP(_CutFeaturesGAP):
    """AlexNet ``features`` through conv5+ReLU (pool5 dropped), then the CAM conv and linear."""

    def __init__(self, alexnet: AlexNet, num_classes: int) -> None:
        super().__init__(alexnet.features, 256, num_classes)


_GOOGLENET_KEEP = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
)


class GoogLeNetGAP(PoolLinearNet):
    """GoogLeNet through inception4e (832 channels, 14x14), then the CAM conv and linear."""

    def __init__(self, googlenet: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.transform_input = googlenet.transform_input
        for name in _GOOGLENET_KEEP:
            setattr(self, name, getattr(googlenet, name))
        self.cam_conv = _cam_conv(832)
        self.fc = _linear(num_classes)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        # torchvision GoogLeNet: ImageNet-normalised input -> the (x-0.5)/0.5 range its weights expect.
        ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((ch0, ch1, ch2), 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        for name in _GOOGLENET_KEEP:
            x = getattr(self, name)(x)
        return self.cam_conv(x)


def backbone_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of a full torchvision state dict that the cut backbone keeps (head keys dropped)."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}


# ---------------------------------------------------------------- registration

_NETS = {"vgg16": VGGGAP, "alexnet": AlexNetGAP, "googlenet": GoogLeNetGAP}


def build_gap(arch: str, default_pool: PoolKind, weights: WeightsChoice, num_classes: int | None = None,
              pool: PoolKind | None = None) -> CAMModel:
    """VGG16-/GoogLeNet-/AlexNet-GAP (or -GMP): ImageNet backbone by default, new untrained head."""
    import torchvision.models as tvm  # only when such a model is built: keeps import light

    kind = pool or default_pool
    enum = None if weights.is_random else torchvision_weights(arch, weights)
    kwargs = {"aux_logits": False, "init_weights": enum is None, "transform_input": enum is not None} if arch == "googlenet" else {}
    net = _NETS[arch](tvm.get_model(arch, weights=None, **kwargs), num_classes or 1000)
    net.pool = kind
    preprocess = Preprocess()
    if enum is not None:
        net.load_state_dict(backbone_keys(download_state_dict(enum, arch), net), strict=False)
        preprocess = preprocess_of(enum)
    suffix = "gap" if kind == "avg" else "gmp"
    return CAMModel(
        net, None, "fc", pool=kind, name=f"{arch}_{suffix}", preprocess=preprocess, categories=None,
        cam_kind="needs-finetune",
        weights_name=(f"backbone {enum}, head untrained" if enum is not None else "random"),
    ).eval()


for _arch, _desc in (("vgg16", "VGG16 cut after conv5_3, 14x14"), ("googlenet", "GoogLeNet cut after inception4e, 14x14"),
                     ("alexnet", "AlexNet cut after conv5, 13x13")):
    _pools: tuple[tuple[PoolKind, str], ...] = (("avg", "gap"), ("max", "gmp"))
    for _pool, _suffix in _pools:
        register(ModelSpec(
            f"{_arch}_{_suffix}", "torchvision", "needs-finetune",
            f"{_desc} + conv 1024 + {'GAP' if _pool == 'avg' else 'GMP'} + linear (paper surgery; fine-tune first)",
            partial(build_gap, _arch, _pool), classes=lambda: None,  # the new head is untrained
        ))
