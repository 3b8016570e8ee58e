"""timm models whose head is global pool -> [dropout] -> one linear layer.

timm exposes ``forward_features`` (the last feature map) and ``get_classifier()``; the pooling type
is checked, and the decomposition is verified numerically on a probe input when a model is wrapped,
so a head with extra layers (a norm, an MLP, a conv) is refused with a clear error instead of
silently giving wrong maps. This family answers every registry name ``timm/<name>``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .imagenet import imagenet_categories
from .kinds import ForeignNet, PoolKind
from .registry import ModelSpec
from .weights import hub_output_to_stderr
from .weights_arg import WeightsChoice


def _classifier_path(net: ForeignNet) -> str:
    clf = net.get_classifier()
    for name, module in net.named_modules():
        if module is clf:
            return name
    raise ModelError("timm model's classifier is not a submodule; it cannot be decomposed for CAM")


def wrap_timm(net: ForeignNet, name: str, *, pool: PoolKind = "avg", preprocess: Preprocess | None = None,
              categories: list[str] | None = None, weights_name: str | None = None) -> CAMModel:
    """Wrap a timm model as a CAMModel after checking its head is pool -> linear."""
    clf = net.get_classifier()
    if not isinstance(clf, nn.Linear):
        raise ModelError(f"timm model {name}: classifier is {type(clf).__name__}, not one Linear; exact CAM needs pool+linear (use a gradient method)")
    gp = getattr(net, "global_pool", None)
    pool_type = getattr(gp, "pool_type", None)
    # None: no SelectAdaptivePool2d to inspect; the numerical check below decides.
    if pool_type not in ("avg", "fast_avg", None):
        raise ModelError(f"timm model {name}: global pool is {pool_type!r}, exact CAM needs average pooling")
    model = CAMModel(net, None, _classifier_path(net), pool=pool, name=name,
                     preprocess=preprocess or Preprocess(), categories=categories, weights_name=weights_name)
    if pool == "avg":
        _verify_head(model, name)
    return model


@torch.inference_mode()
def _verify_head(model: CAMModel, name: str) -> None:
    was_training = model.training
    model.eval()
    try:
        x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
        f = model.features(x)
        net: ForeignNet = model.net
        theirs = net.forward_head(f)
        try:
            ours = model.head(f)
        except RuntimeError:  # the classifier's input is not the pooled map (e.g. a conv in between)
            ours = None
    finally:
        model.train(was_training)
    if ours is None or ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()) + 1e-6):
        raise ModelError(f"timm model {name}: its head is not global-average-pool + linear (extra layers), so CAM is not exact; use a gradient method")


def _timm_preprocess(net: nn.Module) -> Preprocess:
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    interp = cfg.get("interpolation", "bilinear")
    return Preprocess(
        resize=int(size / crop_pct), crop=size, interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )


def build_timm(timm_name: str, weights: WeightsChoice, num_classes: int | None = None, pool: PoolKind | None = None) -> CAMModel:
    """``timm.create_model(timm_name)`` (timm's pretrained weights unless random) as a CAMModel."""
    import timm  # only when a timm model is built: keeps import light

    if weights.kind == "named":
        raise WeightsError(f"timm/{timm_name} takes default (timm's pretrained) or 'random' weights, or weights=PATH, not {weights.name!r}")
    random = weights.is_random
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    try:
        with hub_output_to_stderr():
            net: ForeignNet = timm.create_model(timm_name, pretrained=not random, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ModelError(f"timm has no model {timm_name!r}; see timm.list_models()") from None
        raise
    except Exception as e:  # hub/network errors vary
        if random:
            raise
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot get timm/{timm_name} pretrained weights ({reason}); go online once or pass weights=PATH") from None
    n = net.get_classifier().out_features if isinstance(net.get_classifier(), nn.Linear) else 0
    cats = imagenet_categories() if not random and n == 1000 else None
    return wrap_timm(net.eval(), f"timm/{timm_name}", pool=pool or "avg", preprocess=_timm_preprocess(net),
                     categories=cats, weights_name="random" if random else "timm pretrained")


def timm_spec(timm_name: str) -> ModelSpec:
    """The registry entry for ``timm/<timm_name>`` (built on demand: any timm model may be asked for)."""
    return ModelSpec(f"timm/{timm_name}", "timm", "exact", f"timm {timm_name}", partial(build_timm, timm_name))


