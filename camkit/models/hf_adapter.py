"""Hugging Face ``transformers`` image classifiers (optional extra ``camkit[hf]``).

:func:`wrap_hf` takes an ``AutoModelForImageClassification`` model (loaded from the hub by
:func:`build_hf`, or built locally from a config) and wraps it by its head:

- ConvNeXt / ConvNeXt V2 (``pooler = LayerNorm(mean_xy F)`` -> classifier): exact CAM through the norm
  (:class:`~camkit.models.ln_cam.LayerNormCAMModel`), checked against the model's own logits;
- every other model (ViT, DeiT, BEiT, DINOv2, Swin, ...): gradient methods at the last encoder
  layer's pre-attention norm (``layernorm_before``, the ViT advice of pytorch-grad-cam) or, without
  one, the last ``layernorm``-like module; tokens are laid out on the patch grid from
  ``config.patch_size``, dropping the class, distillation and register tokens.

The wrapped network's forward returns plain logits (``HFLogits``), so the CAM methods see an ordinary
``[B, C]`` classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError, WeightsError
from ..preprocess import Preprocess
from .cam_model import CAMModel
from .classifier_model import ClassifierModel
from .kinds import ForeignNet, PoolKind
from .token_layout import TokenClassifierModel, TokenLayerNormCAMModel, TokenLayout

_LN_POOLED = ("convnext", "convnextv2")


class HFLogits(nn.Module):
    """``forward(x) = hf(pixel_values=x).logits``; the Hugging Face model is ``self.hf``."""

    def __init__(self, hf: ForeignNet) -> None:
        super().__init__()
        self.hf: ForeignNet = hf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits


def _prefix_tokens(config) -> int:
    kind = getattr(config, "model_type", "")
    if kind in ("swin", "swinv2", "convnext", "convnextv2"):
        return 0
    n = 2 if kind == "deit" else 1
    return n + int(getattr(config, "num_register_tokens", 0) or 0)


def _patch_size(config) -> tuple[int, int]:
    p = getattr(config, "patch_size", 16)
    return (int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1]))


def _default_layer(net: HFLogits) -> str:
    names = [n for n, _ in net.named_modules()]
    for suffix in ("layernorm_before", "norm1"):
        hits = [n for n in names if n.endswith("." + suffix)]
        if hits:
            return hits[-1]
    hits = [n for n in names if n.rsplit(".", 1)[-1] in ("layernorm", "norm")]
    if hits:
        return hits[-1]
    raise ModelError(f"no target layer found in {type(net.hf).__name__}; pass layer= with one of its module names")


def _hf_features(net: HFLogits, x: torch.Tensor) -> torch.Tensor:
    return net.hf.base_model(pixel_values=x).last_hidden_state


def hf_preprocess(hf: nn.Module) -> Preprocess:
    """The evaluation transform from ``config.image_size`` (mean/std 0.5 unless the config says otherwise)."""
    cfg = hf.config
    size = getattr(cfg, "image_size", 224)
    size = int(size if isinstance(size, int) else size[0])
    mean = tuple(getattr(cfg, "image_mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(cfg, "image_std", None) or (0.5, 0.5, 0.5))
    return Preprocess(resize=int(round(size / 0.875)), crop=size, interpolation="bicubic", mean=mean, std=std)


def wrap_hf(
    hf: ForeignNet,
    name: str,
    *,
    pool: PoolKind | None = None,
    preprocess: Preprocess | None = None,
    weights_name: str | None = None,
) -> CAMModel | ClassifierModel:
    """Wrap a ``transformers`` image classifier (see the module doc); eval mode."""
    cfg = hf.config
    net = HFLogits(hf.eval())
    labels = getattr(cfg, "id2label", None) or {}
    n = int(getattr(cfg, "num_labels", len(labels)) or len(labels))
    cats = [str(labels.get(i, labels.get(str(i), f"class {i}"))) for i in range(n)] if labels else None
    if cats and all(c == f"LABEL_{i}" for i, c in enumerate(cats)):
        cats = None  # transformers' placeholder names
    meta = dict(name=name, preprocess=preprocess or hf_preprocess(hf), categories=cats, weights_name=weights_name)
    kind = getattr(cfg, "model_type", "")
    if kind in _LN_POOLED and isinstance(getattr(hf, "classifier", None), nn.Linear):
        base = hf.base_model_prefix
        model = TokenLayerNormCAMModel(net, _hf_features, "hf.classifier", f"hf.{base}.layernorm", pool=pool or "avg",
                                       layout=TokenLayout("nchw"), **meta)
        _verify(model, name)
        return model.eval()
    if pool not in (None, "avg"):
        raise WeightsError(f"{name} keeps its own head; pool does not apply to it")
    layout = TokenLayout("tokens", _prefix_tokens(cfg), _patch_size(cfg))
    if kind in ("swin", "swinv2"):
        # Swin's tokens [B, H*W, C] have no prefix; each stage halves the grid, so the layout's patch
        # size is the input's downsampling at the last stage.
        layout = TokenLayout("tokens", 0, tuple(p * 2 ** (len(cfg.depths) - 1) for p in _patch_size(cfg)))
    reason = "class-token head" if layout.prefix_tokens else "head is not pool -> [LayerNorm] -> linear"
    return TokenClassifierModel(net, layout=layout, cam_reason=reason, default_layer=_default_layer(net), num_classes=n, **meta).eval()


@torch.inference_mode()
def _verify(model: CAMModel, name: str) -> None:
    size = 64
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    ours, theirs = model(x), model.net(x)
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()) + 1e-6):
        raise ModelError(f"{name}: its head is not pool -> LayerNorm -> linear as expected, so CAM is not exact; use a gradient method")


def build_hf(repo_id: str, weights: str | None = None, num_classes: int | None = None, pool: PoolKind | None = None) -> CAMModel | ClassifierModel:
    """``AutoModelForImageClassification.from_pretrained(repo_id)`` (needs the ``hf`` extra and the hub once).

    ``weights="random"`` builds the architecture from its config with random weights (the config still
    comes from the hub or its cache).
    """
    try:
        from transformers import AutoConfig, AutoModelForImageClassification
    except ImportError:
        raise ModelError("Hugging Face models need the transformers package: pip install 'camkit[hf]'") from None
    random = weights is not None and str(weights).lower() in ("random", "none")
    kwargs = {} if num_classes is None else {"num_labels": int(num_classes), "ignore_mismatched_sizes": True}
    try:
        if random:
            cfg = AutoConfig.from_pretrained(repo_id, **({} if num_classes is None else {"num_labels": int(num_classes)}))
            hf = AutoModelForImageClassification.from_config(cfg)
        else:
            hf = AutoModelForImageClassification.from_pretrained(repo_id, **kwargs)
    except OSError as e:
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot load hf/{repo_id} ({reason}); go online once so the hub cache has it") from None
    return wrap_hf(hf, f"hf/{repo_id}", pool=pool, weights_name="random" if random else f"hf {repo_id}")
