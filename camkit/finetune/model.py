"""Adapting a registered model for fine-tuning: new head for N classes, pool, frozen backbone.

- GAP-surgery models (``vgg16_gap``, ``googlenet_gmp``, ...): the registry builds the cut backbone
  (ImageNet weights by default) with a new ``cam_conv`` (3x3, 1024) and ``fc`` for N classes; the
  trainable "head" is ``cam_conv`` + ``fc``.
- Exact-CAM models (torchvision, the embedded ``efficientnet_lite0``, timm, CIFAR nets): the linear
  layer is replaced by a new one for N classes; the trainable head is that linear layer.
- ``weights`` a checkpoint file: the network is loaded from it as it is (any class count), then
  its head is replaced when the class count differs (fine-tune a fine-tuned model on new classes).

Freezing the backbone sets ``requires_grad=False`` outside the head; :func:`set_train_mode` then
keeps the frozen part in eval mode (BatchNorm uses and keeps its running statistics).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..models.cam_model import CAMModel
from ..models.gap_surgery import _cam_conv
from ..models.kinds import PoolKind
from ..models.linear_head import replace_linear
from ..models.registry import get_spec, load_model
from ..models.weights_arg import parse_weights

POOLS: dict[str, PoolKind] = {"gap": "avg", "gmp": "max", "avg": "avg", "max": "max"}


def pool_kind(pool: str | None) -> PoolKind | None:
    """``gap``/``avg`` -> ``"avg"``, ``gmp``/``max`` -> ``"max"``; None stays None (model default)."""
    if pool is None:
        return None
    key = pool.lower()
    if key not in POOLS:
        raise ModelError(f"unknown pool {pool!r}; use gap (global average) or gmp (global max)")
    return POOLS[key]


def head_prefixes(model: CAMModel) -> list[str]:
    """Dotted module names (in ``model``) of the layers trained with a frozen backbone."""
    heads = [f"net.{model.classifier_path}"]
    if hasattr(model.net, "cam_conv"):
        heads.insert(0, "net.cam_conv")
    return heads


def init_head(linear: nn.Linear) -> None:
    """A new classifier starts at N(0, 0.01) weights and zero bias (the CAM paper's and
    torchvision's choice for new heads): logits start near 0, so the first loss is about ln N,
    whatever initialisation the model's builder used for its own head."""
    nn.init.normal_(linear.weight, 0.0, 0.01)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def _replace_classifier(model: CAMModel, num_classes: int) -> None:
    replace_linear(model.net, model.classifier_path, num_classes, init=init_head)


def prepare_model(
    name: str,
    num_classes: int,
    pool: str | None = None,
    weights: str | Path | None = None,
    freeze_backbone: bool = False,
) -> CAMModel:
    """A :class:`CAMModel` ready to train for ``num_classes`` classes (see the module doc).

    ``pool``: ``"gap"``/``"gmp"`` (or ``"avg"``/``"max"``; None keeps the model's). ``weights``:
    None (the registry default: ImageNet where available), ``"random"``, a weights name, or a
    checkpoint path. The model is returned in train mode on the CPU with ``categories=None``.
    """
    pool = pool_kind(pool)
    spec = get_spec(name)
    new_head = True
    if spec.cam_kind == "gradient":
        raise ModelError(f"{name} has no pool+linear head, so fine-tuning cannot make its CAMs exact; pick an exact-CAM or *_gap model")
    if parse_weights(weights).is_file:
        model = load_model(name, weights, pool=pool)
        new_head = model.num_classes != num_classes
        if new_head:
            _replace_classifier(model, num_classes)
            if hasattr(model.net, "cam_conv"):  # a surgery head trained for other classes: start it afresh too
                model.net.cam_conv = _cam_conv(model.net.cam_conv[0].in_channels)
    else:
        model = load_model(name, weights, num_classes=num_classes, pool=pool)
    if model.num_classes != num_classes:  # builders that ignore num_classes for their default count
        _replace_classifier(model, num_classes)
    elif new_head:
        init_head(model.classifier)
    model.categories = None
    for p in model.parameters():
        p.requires_grad_(not freeze_backbone)
    if freeze_backbone:
        for prefix in head_prefixes(model):
            for p in model.get_submodule(prefix).parameters():
                p.requires_grad_(True)
    set_train_mode(model, True, freeze_backbone)
    return model


def set_train_mode(model: CAMModel, training: bool, freeze_backbone: bool) -> None:
    """``model.train(training)``; with a frozen backbone, every module outside the head (and not
    an ancestor of it) goes back to eval mode: BatchNorm keeps its ImageNet statistics and the
    backbone's own dropout/drop-path stay off, while the head's dropout stays active."""
    model.train(training)
    if not (training and freeze_backbone):
        return
    keep = head_prefixes(model)
    if model.dropout_path is not None:
        keep.append(f"net.{model.dropout_path}")
    for name, module in model.named_modules():
        inside = any(name == k or name.startswith(k + ".") for k in keep)
        ancestor = name == "" or any(k.startswith(name + ".") for k in keep)
        if not (inside or ancestor):
            module.training = False


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
