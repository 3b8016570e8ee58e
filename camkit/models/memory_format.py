"""Channels-last weights for convolutional networks: the same network, its convolutions run in NHWC.

PyTorch's oneDNN (mkldnn) CPU convolutions work natively on NHWC ("channels last") tensors; given the
default NCHW layout they reorder inputs and outputs to a blocked layout around every convolution,
which costs time and memory (PyTorch tutorial "Channels Last Memory Format in PyTorch"). A model whose
4-D weights are channels-last makes every convolution write channels-last outputs, and the layers in
between (BatchNorm, activations, pooling, additions) keep that layout, so the whole feature extractor
runs without reorders. Inputs may stay NCHW: the first convolution reads them as they are.

Measured on this project's 2-core x86 CPU (batch 16-32, 224 px, inference): EfficientNet-Lite0 1.4x,
ResNet-50 1.27x, VGG16 1.31x, GoogLeNet 2.3x, MobileNetV3-Large 1.37x faster; ConvNeXt-T (LayerNorm
between its convolutions) 0.97x. The results are the same up to float rounding (max map difference
~1e-6 of the map's range on four photos; the same top classes and boxes).

Only models camkit builds are converted (:func:`camkit.models.load_model`); a module passed in by a
caller is left as it is (call :func:`prefer_channels_last` on it to get the same speed). Set the
environment variable ``CAMKIT_CHANNELS_LAST=0`` to keep NCHW weights.
"""

from __future__ import annotations

import os
from typing import TypeVar

OPT_OUT_ENV = "CAMKIT_CHANNELS_LAST"

M = TypeVar("M")


def channels_last_helps(model) -> bool:
    """True for a convolutional network without LayerNorm: one whose layers all have channels-last
    kernels. A model with LayerNorm (transformers, ConvNeXt, Swin) permutes its activations itself and
    gains nothing."""
    from torch import nn

    has_conv = False
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.MultiheadAttention)):
            return False
        has_conv = has_conv or isinstance(module, nn.Conv2d)
    return has_conv


def channels_last_enabled() -> bool:
    """False when ``CAMKIT_CHANNELS_LAST`` is set to ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(OPT_OUT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def prefer_channels_last(model: M) -> M:
    """``model`` with its 4-D parameters and buffers in channels-last layout (in place; ``model`` is
    returned) when :func:`channels_last_helps` and :func:`channels_last_enabled`; otherwise unchanged.
    Values, names and the state dict are the same; only the strides of the 4-D tensors change."""
    import torch

    if channels_last_enabled() and channels_last_helps(model):
        model.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
    return model


def takes_channels_last_input(model) -> bool:
    """True when ``model``'s first convolution has channels-last weights: a batch laid out channels-last
    (``torch.empty(..., memory_format=torch.channels_last)``) then reaches it without a reorder. Its outputs
    are the same bits as for the NCHW batch of the same values."""
    from torch import nn

    for module in model.modules() if isinstance(model, nn.Module) else ():
        if isinstance(module, nn.Conv2d):
            return laid_out_channels_last(module.weight)
    return False


def laid_out_channels_last(weight) -> bool:
    """True for a 4-D tensor in channels-last layout (and not also plain contiguous, as a 1x1 kernel's may be)."""
    import torch

    return weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)
