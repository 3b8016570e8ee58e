"""timm vision transformers and modern backbones: ViT, DeiT, BEiT, EVA, Swin, ConvNeXt, MaxViT.

:func:`plan_timm` reads a timm network's structure and says how camkit explains it:

- tokens averaged (``global_pool='avg'``, no attention pool, prefix tokens excluded) -> linear:
  exact CAM on the patch grid (``TokenCAMModel``); with ``fc_norm`` (a LayerNorm after the pool,
  BEiT's default, ViT's with ``global_pool='avg'``) exact through the norm (``TokenLayerNormCAMModel``,
  see :mod:`camkit.models.ln_cam`);
- Swin (channels-last map, its norm before the pool) -> pool -> linear: exact CAM;
- ``NormMlpClassifierHead`` (ConvNeXt, MaxViT): pool -> LayerNorm -> linear is exact through the
  norm; with an MLP (``pre_logits`` linear + tanh, MaxViT) it is not;
- class-token heads (ViT/DeiT default), DeiT's two-token head, attention pooling (``global_pool='map'``),
  MLP heads: gradient methods at the last block's ``norm1`` (tokens; pytorch-grad-cam's advice for
  ViTs, since the last block's output reaches a class-token head through the class token only) or
  at the last stage.

Any other timm network (ResNet, EfficientNet, ...) is left to :mod:`camkit.models.timm_adapter`.
Every exact plan is checked numerically when a model is wrapped: the decomposed head must reproduce
``net.forward_head`` on random features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ModelError, WeightsError
from ..preprocess import Preprocess
from .cam_model import CamKind, CAMModel
from .classifier_model import ClassifierModel
from .imagenet import imagenet_categories
from .kinds import ForeignNet, PoolKind
from .ln_cam import LayerNormCAMModel, norm_kind
from .registry import ModelSpec
from .timm_adapter import timm_spec, wrap_timm
from .token_layout import (
    TokenCAMModel,
    TokenClassifierModel,
    TokenLayerNormCAMModel,
    TokenLayout,
    tokens_features,
)
from .weights import check_download_host, hub_output_to_stderr
from .weights_arg import parse_weights

HeadKind = Literal["pool-linear", "pool-norm-linear", "gradient"]


@dataclass(frozen=True)
class TimmPlan:
    """How a timm network is explained.

    head: ``"pool-linear"`` / ``"pool-norm-linear"`` (exact CAM) or ``"gradient"``.
    layout: the activations' layout (tokens, NHWC or NCHW).
    classifier_path, norm_path, dropout_path: dotted names in the network (exact plans).
    default_layer: the gradient methods' target layer (gradient plans).
    reason: one phrase for ``camkit models`` (why gradient, or which exact head).
    """

    family: str
    head: HeadKind
    layout: TokenLayout
    reason: str
    classifier_path: str = ""
    norm_path: str | None = None
    dropout_path: str | None = None
    default_layer: str = ""

    @property
    def cam_kind(self) -> CamKind:
        return "gradient" if self.head == "gradient" else "exact"


def _is_identity(m: nn.Module | None) -> bool:
    return m is None or isinstance(m, nn.Identity)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _plan_vit(net: ForeignNet) -> TimmPlan:
    layout = TokenLayout("tokens", int(net.num_prefix_tokens), _pair(net.patch_embed.patch_size))
    gradient = partial(TimmPlan, "vit", "gradient", layout, default_layer=f"blocks.{len(net.blocks) - 1}.norm1")
    pool = getattr(net, "global_pool", "token")
    if getattr(net, "head_dist", None) is not None:
        return gradient(reason="class + distillation token heads")
    if getattr(net, "attn_pool", None) is not None or pool == "map":
        return gradient(reason="attention-pooling head")
    if pool != "avg":
        return gradient(reason="class-token head" if pool == "token" else f"global_pool={pool!r} head")
    if getattr(net, "pool_include_prefix", False):
        return gradient(reason="the pool averages the prefix tokens too")
    if not isinstance(getattr(net, "head", None), nn.Linear):
        return gradient(reason="no linear classifier")
    drop = "head_drop" if isinstance(getattr(net, "head_drop", None), nn.Dropout) else None
    if _is_identity(getattr(net, "fc_norm", None)):
        return TimmPlan("vit", "pool-linear", layout, "token average -> linear", "head", None, drop)
    norm_kind(net.fc_norm)  # refuses norms other than LayerNorm / RMSNorm
    return TimmPlan("vit", "pool-norm-linear", layout, "token average -> LayerNorm -> linear", "head", "fc_norm", drop)


def _avg_pool(head: nn.Module) -> bool:
    return getattr(getattr(head, "global_pool", None), "pool_type", None) in ("avg", "fast_avg")


def _plan_nhwc(net: ForeignNet) -> TimmPlan:
    layout = TokenLayout("nhwc")
    head = net.head
    last = f"layers.{len(net.layers) - 1}" if hasattr(net, "layers") else "norm"
    if _avg_pool(head) and isinstance(getattr(head, "fc", None), nn.Linear):
        drop = "head.drop" if isinstance(getattr(head, "drop", None), nn.Dropout) else None
        return TimmPlan("swin", "pool-linear", layout, "norm, then pool -> linear", "head.fc", None, drop)
    return TimmPlan("swin", "gradient", layout, "head is not pool -> linear", default_layer=last)


def _plan_norm_mlp(net: ForeignNet) -> TimmPlan:
    layout = TokenLayout("nchw")
    head = net.head
    if hasattr(net, "stages"):
        last = "norm_pre" if not _is_identity(getattr(net, "norm_pre", None)) else f"stages.{len(net.stages) - 1}"
        if not _is_identity(getattr(net, "norm", None)):
            last = "norm"
    else:
        last = "head.global_pool"
    if not _is_identity(head.pre_logits):
        return TimmPlan(_norm_mlp_family(net), "gradient", layout, "MLP head (pool -> norm -> linear -> tanh -> linear)", default_layer=last)
    if not _avg_pool(head) or not isinstance(head.fc, nn.Linear):
        return TimmPlan(_norm_mlp_family(net), "gradient", layout, "head is not average pool -> norm -> linear", default_layer=last)
    norm_kind(head.norm)
    drop = "head.drop" if isinstance(getattr(head, "drop", None), nn.Dropout) else None
    return TimmPlan(_norm_mlp_family(net), "pool-norm-linear", layout, "pool -> LayerNorm -> linear", "head.fc", "head.norm", drop)


def _norm_mlp_family(net: ForeignNet) -> str:
    """The family a NormMlpClassifierHead network is named by (ConvNeXt, MaxViT, ...): timm's class name."""
    name = type(net).__name__.lower()
    return "maxvit" if name.startswith("maxxvit") else name


def plan_timm(net: ForeignNet) -> TimmPlan | None:
    """The plan for a timm network, or None when it is not one of this module's families."""
    head = getattr(net, "head", None)
    if hasattr(net, "blocks") and hasattr(net, "patch_embed") and hasattr(net, "num_prefix_tokens"):
        return _plan_vit(net)
    if getattr(net, "output_fmt", None) == "NHWC" and head is not None:
        return _plan_nhwc(net)
    if type(head).__name__ == "NormMlpClassifierHead":
        return _plan_norm_mlp(net)
    return None


def _forward_features(net: ForeignNet, x: torch.Tensor) -> torch.Tensor:
    return net.forward_features(x)


def timm_preprocess(net: nn.Module) -> Preprocess:
    """The evaluation transform timm resolves for ``net`` (input size, crop fraction, mean/std)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(net)
    size = int(cfg["input_size"][-1])
    interp = cfg.get("interpolation", "bicubic")
    return Preprocess(
        resize=int(size / float(cfg.get("crop_pct", 0.875))), crop=size,
        interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bicubic",
        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
    )


def wrap_timm_family(
    net: nn.Module,
    name: str,
    plan: TimmPlan | None = None,
    *,
    pool: PoolKind | None = None,
    preprocess: Preprocess | None = None,
    categories: list[str] | None = None,
    weights_name: str | None = None,
) -> CAMModel | ClassifierModel:
    """Wrap a timm transformer / modern backbone by its :class:`TimmPlan` (exact plans are verified)."""
    plan = plan or plan_timm(net)
    if plan is None:
        raise ModelError(f"timm model {name} is not a ViT/DeiT/BEiT/EVA/Swin/ConvNeXt/MaxViT-style network")
    meta = dict(name=name, preprocess=preprocess or timm_preprocess(net), categories=categories, weights_name=weights_name)
    if plan.head == "gradient":
        if pool not in (None, "avg"):
            raise WeightsError(f"{name} keeps its own head ({plan.reason}); pool does not apply to it")
        return TokenClassifierModel(net, layout=plan.layout, cam_reason=plan.reason, default_layer=plan.default_layer, **meta).eval()
    features_fn = tokens_features(_forward_features, plan.layout)
    if plan.head == "pool-norm-linear":
        model: CAMModel = TokenLayerNormCAMModel(
            net, features_fn, plan.classifier_path, plan.norm_path, dropout_path=plan.dropout_path,
            pool=pool or "avg", layout=plan.layout, **meta,
        )
    else:
        model = TokenCAMModel(net, features_fn, plan.classifier_path, dropout_path=plan.dropout_path, pool=pool or "avg", layout=plan.layout, **meta)
    if model.pool == "avg":
        verify_head(model, plan, name)
    return model.eval()


def _random_raw_features(net: nn.Module, layout: TokenLayout, k: int) -> tuple[torch.Tensor, tuple[int, int]]:
    g = torch.Generator().manual_seed(0)
    gh, gw = 3, 4  # non-square on purpose: a transposed grid would be caught
    ph, pw = layout.patch_size
    if layout.kind == "tokens":
        raw = torch.randn(1, layout.prefix_tokens + gh * gw, k, generator=g)
    elif layout.kind == "nhwc":
        raw = torch.randn(1, gh, gw, k, generator=g)
    else:
        raw = torch.randn(1, k, gh, gw, generator=g)
    p = next(net.parameters(), None)
    if p is not None:
        raw = raw.to(device=p.device, dtype=p.dtype)
    return raw, (gh * ph, gw * pw)


@torch.inference_mode()
def verify_head(model: CAMModel, plan: TimmPlan, name: str) -> None:
    """Raise :class:`ModelError` unless ``model.head(map(raw)) == net.forward_head(raw)`` on random ``raw``."""
    was_training = model.training
    model.eval()
    try:
        raw, hw = _random_raw_features(model.net, plan.layout, model.num_features)
        f = plan.layout.to_map(raw, hw)
        if isinstance(model, LayerNormCAMModel):
            f = model.normalise(f)
        net: ForeignNet = model.net
        ours, theirs = model.head(f), net.forward_head(raw)
    finally:
        model.train(was_training)
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()) + 1e-6):
        raise ModelError(f"timm model {name}: its head does not decompose as {plan.reason}, so CAM is not exact; use a gradient method")


def _wants_random(weights) -> bool:
    """``weights`` (None, a string or a parsed weights choice) asks for random initialisation."""
    return parse_weights(weights).is_random


HF_HUB_URL = "https://huggingface.co/"


@contextlib.contextmanager
def _hf_hub_offline(offline: bool) -> Iterator[None]:
    """Hugging Face Hub's offline mode while the block runs (cached files load, missing ones fail at once)."""
    if not offline:
        yield
        return
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:
        yield
        return
    before = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = before


def create_timm_net(timm_name: str, weights=None, num_classes: int | None = None, **kwargs) -> nn.Module:
    """``timm.create_model`` with camkit's weights convention (None/"default" = timm's pretrained weights)."""
    import timm

    choice = parse_weights(weights)
    random = choice.is_random
    if choice.kind not in ("default", "random"):
        raise WeightsError(f"timm/{timm_name} takes weights=None (timm's pretrained), 'random' or a checkpoint path, not {str(weights)!r}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    offline = False
    if not random:
        try:  # offline, Hugging Face's client retries for about a minute before it gives up
            check_download_host(HF_HUB_URL)
        except OSError:
            offline = True
    try:
        with _hf_hub_offline(offline), hub_output_to_stderr():
            net = timm.create_model(timm_name, pretrained=not random, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ModelError(f"timm has no model {timm_name!r}; see timm.list_models()") from None
        if random:
            raise
        raise WeightsError(f"cannot get timm/{timm_name} pretrained weights ({str(e).strip().splitlines()[0][:120]}); go online once or pass weights=PATH") from None
    except Exception as e:  # hub/network errors vary by backend
        if random:
            raise
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot get timm/{timm_name} pretrained weights ({reason}); go online once or pass weights=PATH") from None
    return net.eval()


def build_timm_family(
    timm_name: str, weights=None, num_classes: int | None = None, pool: PoolKind | None = None, **create_kwargs
) -> CAMModel | ClassifierModel:
    """A timm model by name (``vit_base_patch16_224``), wrapped by its plan; ``create_kwargs`` go to timm.

    Networks outside this module's families are wrapped by :func:`camkit.models.timm_adapter.wrap_timm`.
    """
    net: ForeignNet = create_timm_net(timm_name, weights, num_classes, **create_kwargs)
    random = _wants_random(weights)
    n_out = net.num_classes if hasattr(net, "num_classes") else 0
    cats = imagenet_categories() if not random and n_out == 1000 else None
    meta: dict[str, Any] = dict(preprocess=timm_preprocess(net), categories=cats, weights_name="random" if random else "timm pretrained")
    plan = plan_timm(net)
    if plan is None:
        return wrap_timm(net, f"timm/{timm_name}", pool=pool or "avg", **meta)
    return wrap_timm_family(net, f"timm/{timm_name}", plan, pool=pool, **meta)


def plan_timm_name(timm_name: str, **create_kwargs) -> TimmPlan | None:
    """The plan of a timm model name, read from a weightless (``meta`` device) instance: fast, no download."""
    import timm

    try:
        net = timm.create_model(timm_name, pretrained=False, device="meta", **create_kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ModelError(f"timm has no model {timm_name!r}; see timm.list_models()") from None
        raise
    return plan_timm(net)


def timm_family_spec(timm_name: str) -> ModelSpec:
    """Registry entry for ``timm/<timm_name>``: exact or gradient as the model's head allows."""
    plan = plan_timm_name(timm_name)
    if plan is None:
        return timm_spec(timm_name)
    kind = "exact CAM" if plan.cam_kind == "exact" else "gradient CAMs"
    return ModelSpec(
        f"timm/{timm_name}", "timm", plan.cam_kind, f"timm {timm_name} ({plan.family}: {plan.reason}; {kind})",
        partial(build_timm_family, timm_name),
    )
