"""Registers the CIFAR-scale GAP networks (imported by the registry after the built-in models).

All are exact-CAM :class:`CAMModel` s for 32x32 input with CIFAR-10 normalisation, randomly
initialised: train them with ``camkit finetune --dataset cifar10``, then load the checkpoint with
``--weights``.
"""

from __future__ import annotations

from functools import partial

from ..errors import WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .registry import ModelSpec, register

CIFAR_PREPROCESS_KW = dict(resize=32, crop=32, interpolation="bilinear")


def cifar_preprocess() -> Preprocess:
    from .cifar import CIFAR10_MEAN, CIFAR10_STD

    return Preprocess(**CIFAR_PREPROCESS_KW, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def build_cifar(arch: str, weights: str | None = None, num_classes: int | None = None, pool: str | None = None,
                dropout: float = 0.0) -> CAMModel:
    """A CIFAR network, random init (``weights`` None or "random"; files go through load_model)."""
    from . import cifar
    from .weights import is_random_weights

    if weights is not None and not is_random_weights(weights):
        raise WeightsError(
            f"{arch} has no published weights ({weights!r}); train it with `camkit finetune --model {arch}` "
            "or pass --weights PATH to a checkpoint"
        )
    n = num_classes or 10
    if arch == "cifar_vgg16_bn_gap":
        net, fn = cifar.cifar_vgg16_bn(n), cifar.vgg_features
    elif arch == "cifar_resnet18":
        net, fn = cifar.cifar_resnet(18, n), cifar.resnet_features
    elif arch == "cifar_resnet50":
        net, fn = cifar.cifar_resnet(50, n), cifar.resnet_features
    elif arch == "wrn_40_2":
        net, fn = cifar.WideResNet(40, 2, dropout, n), cifar.wrn_features
    else:  # pragma: no cover - only registered names reach here
        raise ValueError(arch)
    return CAMModel(
        net, fn, "fc", pool=pool or "avg", name=arch, preprocess=cifar_preprocess(),
        categories=list(cifar.CIFAR10_CLASSES) if n == 10 else None, cam_kind="exact", weights_name="random",
    )


for _name, _desc in (
    ("cifar_vgg16_bn_gap", "CIFAR VGG16-BN, pool5 dropped, GAP + linear: 2x2 maps at 32 input (14.7M params)"),
    ("cifar_resnet18", "CIFAR ResNet-18 (3x3 stem, no max-pool), GAP after layer4: 4x4 maps (11.2M params)"),
    ("cifar_resnet50", "CIFAR ResNet-50 'layer4' variant (3x3 stem, no max-pool), GAP after layer4: 4x4 maps (23.5M)"),
    ("wrn_40_2", "Wide ResNet 40-2 (Zagoruyko & Komodakis 2016), GAP over 8x8 maps (2.2M params)"),
):
    register(ModelSpec(_name, "camkit", "exact", _desc + "; random init, train with camkit finetune",
                       partial(build_cifar, _name), default_weights="random"))
