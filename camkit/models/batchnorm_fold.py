"""Batch norm folded into the convolution before it: an inference copy of a network, the same function.

In eval mode a ``BatchNorm2d`` is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``;
when its input is a convolution's output, the convolution's weights and bias can absorb it (Ioffe & Szegedy,
ICML 2015; ``torch.nn.utils.fusion.fuse_conv_bn_eval``). The network then skips one pass over every such
activation. Measured on this project's 2-core x86 CPU (channels-last, batch 32, 224 px, interleaved runs):
EfficientNet-Lite0 (49 of its 49 batch norms fold) computes its CAMs (forward, top-k, maps) 1.23x faster, its
feature extractor alone ~1.4x. Values change by float rounding only.

The copy is for inference: :func:`fold_batchnorm` never touches the model it is given (training, Grad-CAM on a
named convolution, hooks and the state dict keep their meaning there). Which batch norm follows which
convolution is read from one forward (a batch norm is folded only when its input *is* a convolution's
output tensor), and the copy is checked against the original on that input before it is used: a network in
which that convolution's output also feeds something else (which folding would change) is left unfolded.
Set the environment variable ``CAMKIT_FOLD_BATCHNORM=0`` to keep the batch norms.
"""

from __future__ import annotations

import copy
import os
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from camkit.models.cam_model import CAMModel

OPT_OUT_ENV = "CAMKIT_FOLD_BATCHNORM"

#: Largest accepted ``max |folded - original| / max |original|`` of the feature map on the check input.
#: Rounding gives ~1e-5 (EfficientNet-Lite0: 6e-6); a wrong fold gives order 1.
TOLERANCE = 1e-4


def folding_enabled() -> bool:
    """False when ``CAMKIT_FOLD_BATCHNORM`` is set to ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(OPT_OUT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def fold_batchnorm(model: CAMModel, input_size: int | None = None, keep: Iterable[str] = ()) -> CAMModel | None:
    """An inference copy of ``model`` with each foldable batch norm folded into its convolution, or None.

    Args:
        model: a :class:`~camkit.models.cam_model.CAMModel` in eval mode (left unchanged); anything else gives None.
        input_size: side of the square check input (default: the model's ``preprocess.crop``).
        keep: full module names to leave as they are (a method's target layers): a convolution named here keeps
            its batch norm after it, since folding would change what the convolution outputs.

    Returns:
        A deep copy (parameters without gradients, same device and memory layout) whose folded batch
        norms are replaced by their activation (or ``nn.Identity``) under the same names, so its features
        are ``model.features`` up to float rounding (checked: :data:`TOLERANCE`). None when folding is
        switched off (:func:`folding_enabled`), ``model`` is training (its batch norms use batch
        statistics), no batch norm outside ``keep`` takes a convolution's output, or the check fails.
    """
    import torch
    from torch import nn

    from camkit.models.cam_model import CAMModel

    if not folding_enabled() or not isinstance(model, CAMModel) or model.training:
        return None
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return None  # e.g. a transformer: no forward needed to know
    size = int(input_size or model.preprocess.crop)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    kept = set(keep)
    with torch.inference_mode():
        pairs, expected = _conv_bn_pairs(model, probe)
    pairs = [(c, b) for c, b in pairs if c not in kept]
    if not pairs:
        return None
    # no_grad, not inference mode: the copy's parameters must be usable by the gradient methods
    with torch.no_grad():
        folded = copy.deepcopy(model)
        for conv_name, bn_name in pairs:
            _fold_pair(folded, conv_name, bn_name)
        folded.requires_grad_(False)
    with torch.inference_mode():
        got = folded.features(probe)
        scale = float(expected.abs().max())
        if got.shape != expected.shape or not float((got - expected).abs().max()) <= TOLERANCE * max(scale, 1e-12):
            return None
    return folded


def _conv_bn_pairs(model: CAMModel, probe: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """``(conv name, batch norm name)`` for each batch norm of a known kind whose input is a convolution's output
    in a forward of ``probe``, and that forward's feature map. Hooks live for this one call."""
    from torch import nn

    names = {module: name for name, module in model.named_modules()}
    outputs: dict[int, tuple[nn.Module, weakref.ref]] = {}
    pairs: list[tuple[str, str]] = []

    def after_conv(module, args, out) -> None:
        # a weak reference tells a live output from a later tensor that got a freed one's id, without keeping
        # every output of the forward in memory
        outputs[id(out)] = (module, weakref.ref(out))

    def after_bn(module, args, out) -> None:
        seen = outputs.get(id(args[0])) if args else None
        if seen is not None and seen[1]() is args[0] and _replacement(module) is not None:
            pairs.append((names[seen[0]], names[module]))

    hooks = []
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                hooks.append(module.register_forward_hook(after_conv))
            elif isinstance(module, nn.BatchNorm2d):
                hooks.append(module.register_forward_hook(after_bn))
        features = model.features(probe)
    finally:
        for hook in hooks:
            hook.remove()
    # a module met more than once (shared, or a convolution feeding two norms) is left alone
    bn_uses, conv_uses = Counter(b for _, b in pairs), Counter(c for c, _ in pairs)
    return [(c, b) for c, b in pairs if bn_uses[b] == 1 and conv_uses[c] == 1], features


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What stands in for a folded batch norm: the identity, or the activation a norm+activation module applies
    after its norm; None for a kind whose forward is not known (left unfolded)."""
    from torch import nn

    from camkit.models.efficientnet_lite import BatchNormAct2d

    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn) is BatchNormAct2d:
        return nn.ReLU6(inplace=True) if bn.act else nn.Identity()
    return None


def _fold_pair(model: nn.Module, conv_name: str, bn_name: str) -> None:
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from camkit.models.memory_format import laid_out_channels_last

    conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)  # as paired
    replacement = _replacement(bn)
    assert replacement is not None  # only known kinds are paired
    fused = fuse_conv_bn_eval(conv, bn)  # a copy of conv (its class kept, e.g. a TF-"same" padding conv)
    layout = torch.channels_last if laid_out_channels_last(conv.weight) else torch.contiguous_format
    fused.weight.data = fused.weight.data.contiguous(memory_format=layout)
    _set(model, conv_name, fused)
    _set(model, bn_name, replacement)


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
