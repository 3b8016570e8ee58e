"""The CAM paper's head surgery: cut a network, add a 3x3 conv of 1024 units, global pooling, linear.

Zhou et al. (CVPR 2016) §3: "we remove the fully-connected layers before the final output and
replace them with GAP followed by a fully-connected softmax layer" with an added conv layer:

- VGG16-GAP: layers after conv5_3 removed (pool5, fc6-8) -> 14x14 maps at 224 input.
- GoogLeNet-GAP: layers after inception4e removed -> 14x14 maps.
- AlexNet-GAP: layers after conv5 removed -> 13x13 maps.

Each gets ``conv 3x3, 1024, stride 1, pad 1 + ReLU -> global avg (or max) pool -> linear``. The new
layers are untrained: the model is only useful for CAMs after ``camkit finetune``. Backbone key
names are torchvision's, so torchvision's ImageNet weights load into the backbone directly.
"""

from __future__ import annotations

import torch
from torch import nn

CAM_CONV_CHANNELS = 1024


def _cam_conv(in_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, CAM_CONV_CHANNELS, kernel_size=3, stride=1, padding=1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def _linear(num_classes: int) -> nn.Linear:
    fc = nn.Linear(CAM_CONV_CHANNELS, num_classes)
    nn.init.normal_(fc.weight, 0.0, 0.01)
    nn.init.zeros_(fc.bias)
    return fc


class VGGGAP(nn.Module):
    """VGG ``features`` through conv5_3+ReLU, then the CAM conv and a new linear layer."""

    def __init__(self, vgg: nn.Module, num_classes: int) -> None:
        super().__init__()
        # features[-1] is pool5 in torchvision's VGG: drop it to keep 14x14 maps.
        self.features = nn.Sequential(*list(vgg.features.children())[:-1])
        self.cam_conv = _cam_conv(512)
        self.fc = _linear(num_classes)


class AlexNetGAP(nn.Module):
    """AlexNet ``features`` through conv5+ReLU (pool5 dropped), then the CAM conv and linear."""

    def __init__(self, alexnet: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*list(alexnet.features.children())[:-1])
        self.cam_conv = _cam_conv(256)
        self.fc = _linear(num_classes)


_GOOGLENET_KEEP = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
)


class GoogLeNetGAP(nn.Module):
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


def vgg_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.cam_conv(net.features(x))


def googlenet_gap_features(net: GoogLeNetGAP, x: torch.Tensor) -> torch.Tensor:
    x = net._transform_input(x)
    for name in _GOOGLENET_KEEP:
        x = getattr(net, name)(x)
    return net.cam_conv(x)


def backbone_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of a full torchvision state dict that the cut backbone keeps (head keys dropped)."""
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
