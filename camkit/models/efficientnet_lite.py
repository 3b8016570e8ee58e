"""EfficientNet-Lite0 in plain torch, state-dict compatible with timm ``tf_efficientnet_lite0``.

camkit's embedded default model. It exists so that the command-line startup path does not pay for
``import timm`` (which imports torchvision, seconds on a small CPU): this module imports only torch.

Compatibility contract (checked in tests/test_lite0.py against timm):

- ``state_dict()`` keys and shapes are exactly timm's ``tf_efficientnet_lite0`` (296 entries), so a
  timm-named checkpoint loads ``strict=True`` into either model;
- the numerics are timm's: TensorFlow "SAME" padding (asymmetric, computed from the input size for the
  stride-2 convs; static symmetric ``(k - 1) // 2`` for stride 1), BatchNorm eps 1e-3, ReLU6, no
  squeeze-excitation, stem 32 channels, head conv 320 -> 1280, classifier ``Linear(1280, num_classes)``.

Inputs are float tensors ``[B, 3, H, W]`` normalised with mean = std = 0.5 per channel (pixels in
[0, 1] mapped to [-1, 1]); any H, W >= 1 works, the feature map is ``ceil`` of H/32 by W/32.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EfficientNetLite0", "Conv2dSame", "BatchNormAct2d", "LITE0_STAGES"]

BN_EPS = 1e-3  # TensorFlow's default, which the ported weights were trained with

# (block kind, kernel, stride, expansion, out channels, repeats) per stage, as in timm's
# ``_gen_efficientnet_lite`` at width 1.0 / depth 1.0: "ds" = depthwise-separable, "ir" = inverted residual.
LITE0_STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 3, 1, 1, 16, 1),
    ("ir", 3, 2, 6, 24, 2),
    ("ir", 5, 2, 6, 40, 2),
    ("ir", 3, 2, 6, 80, 3),
    ("ir", 5, 1, 6, 112, 3),
    ("ir", 5, 2, 6, 192, 4),
    ("ir", 3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def _same_pad_amount(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total TF 'SAME' padding along one axis so that the output has ceil(size / stride) samples."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from each input's size.

    The padding is asymmetric when odd: the extra row/column goes to the bottom/right
    (``left = pad // 2``, ``right = pad - pad // 2``), as TF and timm's ``Conv2dSame`` do.
    Parameters (and state-dict keys) are those of a plain ``nn.Conv2d`` with ``padding=0``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        pad_h = _same_pad_amount(ih, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = _same_pad_amount(iw, self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """TF-SAME conv: static symmetric padding for stride 1 (odd kernel), dynamic otherwise."""
    if stride == 1 and (kernel - 1) % 2 == 0:
        return nn.Conv2d(in_ch, out_ch, kernel, stride=1, padding=(kernel - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride=stride, groups=groups)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm2d (eps 1e-3) followed by ReLU6 when ``act`` is true.

    Same parameters and buffers as ``nn.BatchNorm2d`` (weight, bias, running_mean, running_var,
    num_batches_tracked), i.e. the keys of timm's ``BatchNormAct2d``; a forward hook on it sees the
    activated output, as in timm.
    """

    def __init__(self, num_features: int, act: bool = True) -> None:
        super().__init__(num_features, eps=BN_EPS)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        # In place is safe: the batch-norm result is a fresh tensor owned by this module.
        return F.relu6(x, inplace=True) if self.act else x


class DepthwiseSeparableConv(nn.Module):
    """Depthwise kxk conv + BN + ReLU6, then pointwise 1x1 conv + BN (no activation).

    timm key names: ``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_ch == out_ch
        self.conv_dw = _conv(in_ch, in_ch, kernel, stride, groups=in_ch)
        self.bn1 = BatchNormAct2d(in_ch)
        self.conv_pw = _conv(in_ch, out_ch, 1)
        self.bn2 = BatchNormAct2d(out_ch, act=False)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return x + shortcut if self.has_skip else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + BN + ReLU6, depthwise kxk + BN + ReLU6, 1x1 project + BN.

    The residual is added when stride is 1 and channels are unchanged (no drop-path: inference
    numerics only). timm key names: ``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.has_skip = stride == 1 and in_ch == out_ch
        self.conv_pw = _conv(in_ch, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = _conv(mid, out_ch, 1)
        self.bn3 = BatchNormAct2d(out_ch, act=False)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.bn1(self.conv_pw(x))
        x = self.bn2(self.conv_dw(x))
        x = self.bn3(self.conv_pwl(x))
        return x + shortcut if self.has_skip else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with timm ``tf_efficientnet_lite0`` attribute names and state-dict keys.

    ``forward_features``: ``[B, 3, H, W]`` -> ``[B, 1280, ceil(H/32), ceil(W/32)]`` float, after
    ``conv_head`` + ``bn2`` + ReLU6 (so values are in [0, 6]); this is the map CAMs are made from.
    ``forward_head``: global average pool over H, W -> dropout (training only) -> ``classifier``,
    giving logits ``[B, num_classes]``. Because the head is pool -> linear, the CAM of class c is
    ``classifier.weight[c] @ features`` and its spatial mean plus ``classifier.bias[c]`` is the logit.
    """

    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.num_features = HEAD_CHANNELS

        self.conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self.bn1 = BatchNormAct2d(STEM_CHANNELS)

        stages: list[nn.Sequential] = []
        in_ch = STEM_CHANNELS
        for kind, kernel, stride, expansion, out_ch, repeats in LITE0_STAGES:
            blocks: list[nn.Module] = []
            for j in range(repeats):
                s = stride if j == 0 else 1
                if kind == "ds":
                    blocks.append(DepthwiseSeparableConv(in_ch, out_ch, kernel, s))
                else:
                    blocks.append(InvertedResidual(in_ch, out_ch, kernel, s, expansion))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)

        self.conv_head = _conv(in_ch, HEAD_CHANNELS, 1)
        self.bn2 = BatchNormAct2d(HEAD_CHANNELS)
        # Parameter-free, like timm's SelectAdaptivePool2d(pool_type="avg", flatten=True).
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Only matters for training from scratch; the ImageNet weights overwrite all of it.
        if self.classifier.weight.is_meta:
            # Built on the meta device to receive a file's tensors: nothing to initialise (and normal_ there
            # goes through torch._refs, which imports torch._dynamo: ~1 s).
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[0])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer with a freshly initialised one for ``num_classes`` (fine-tuning)."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(self.classifier.weight, -bound, bound)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1280, ceil(H/32), ceil(W/32)]`` (post-ReLU6, in [0, 6])."""
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        return self.bn2(self.conv_head(x))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """``[B, 1280, h, w]`` -> logits ``[B, num_classes]`` (mean over h, w; dropout; linear), or
        the pooled ``[B, 1280]`` with ``pre_logits`` (timm's signature)."""
        x = self.global_pool(features)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> logits ``[B, num_classes]``."""
        return self.forward_head(self.forward_features(x))
