"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, arXiv 1905.00780): input-gradient and every bias-gradient, summed.

A ReLU network's output decomposes exactly into the input-gradient term and the bias-gradient terms of
all layers, ``f(x) = <grad_x f, x> + sum_l <grad_{b_l} f, b_l>`` (Eq. 2). The saliency map (Eq. 5) is

    S(x) = psi(grad_x f(x) o x) + sum_l sum_c psi(f^b_l(x)_c)
    f^b_l(x)_c(i,j) = b_{l,c} * dS/dz_{l,c}(i,j)     the bias-gradient of channel c of layer l at (i,j)
    psi(m) = bilinear upsampling to the input of the min-max normalised |m|, channel by channel

where ``z_l`` is the output of a layer with a per-channel bias ``b_l``: a ``Conv2d`` with a bias (its
bias), a ``BatchNorm2d`` in eval mode (its effective bias ``beta - mu gamma / sqrt(var + eps)``), and
a subclass of ``BatchNorm2d`` that fuses an activation after the normalisation (timm's and camkit's
``BatchNormAct2d``): its ``z`` is the normalisation's output, which no hook sees, so its gradient is
recovered from the gradient at the module's input ``u`` (taken on a private copy, so only the path
through this module counts): ``z = s u + t`` per channel, hence ``dS/dz = (dS/du) / s`` with
``s = gamma / sqrt(var + eps)`` (channels with ``s = 0`` contribute 0). The input term is normalised per colour channel as well. The map is at the
input's resolution ``[H, W]``, unitless; a channel whose ``|m|`` is constant contributes 0 (no
epsilon). ``compute_method_maps`` returns ``S - min S`` per map (the paper's final min-max without the
division: the sum of many [0, 1] maps has a large floor, which would make every pixel pass a CVPR16
threshold ``tau * max``); :func:`fullgrad_maps` returns ``S`` itself.

pytorch-grad-cam's ``FullGrad`` follows the same formula with two differences: it adds 1e-7 to each
channel's range before dividing (negligible only when a channel's range is much larger than 1e-7;
bias-gradients often are not), and it collects exactly ``Conv2d``/``BatchNorm2d`` modules (not
subclasses, so a fused ``BatchNormAct2d`` is left out). Both are reproducible with the keyword
arguments ``eps`` and ``fused_norms`` of :func:`fullgrad_maps` (used by the parity test).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import ModelError
from ..engine import upsample
from .base import MethodCall, MethodOutput, target_scores


def _effective_bias(m: nn.Module) -> torch.Tensor | None:
    if isinstance(m, nn.BatchNorm2d):
        if m.running_mean is None or m.running_var is None:
            return None  # batch statistics even in eval mode: no fixed bias
        w = m.weight if m.weight is not None else torch.ones_like(m.running_mean)
        b = m.bias if m.bias is not None else torch.zeros_like(m.running_mean)
        return (b - m.running_mean * w / torch.sqrt(m.running_var + m.eps)).detach()
    if isinstance(m, nn.Conv2d) and m.bias is not None:
        return m.bias.detach()
    return None


def bias_layers(model: nn.Module, fused_norms: bool = True) -> list[tuple[nn.Module, bool]]:
    """``(layer, fused)`` for every layer with a per-channel bias, in module order.

    ``fused`` False: a plain ``Conv2d``/``BatchNorm2d``, whose output is hooked. True: a ``BatchNorm2d``
    subclass (normalisation then element-wise ops), whose input is hooked (see the module docstring).
    """
    out = []
    for m in model.modules():
        if type(m) in (nn.Conv2d, nn.BatchNorm2d):
            if _effective_bias(m) is not None:
                out.append((m, False))
        elif fused_norms and isinstance(m, nn.BatchNorm2d) and _effective_bias(m) is not None:
            out.append((m, True))
    return out


def _bn_scale(m: nn.Module) -> torch.Tensor:
    """``d z / d u`` of a BatchNorm that uses its running statistics (the fused layers of :func:`bias_layers`)."""
    assert isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None
    w = m.weight if m.weight is not None else torch.ones_like(m.running_mean)
    return (w / torch.sqrt(m.running_var + m.eps)).detach()


@contextmanager
def _capture_all(layers: list[tuple[nn.Module, bool]]) -> Iterator[list]:
    """Each bias layer's output (fused: its input), last call, kept out of reach of in-place ops downstream."""
    store: list = [None] * len(layers)
    handles = []

    def make(i: int, fused: bool):
        if fused:
            def pre_hook(_m, inp):
                store[i] = inp[0].clone()  # a private copy: only the path through this module reaches it
                return (store[i],) + tuple(inp[1:])
            return pre_hook

        def hook(_m, _inp, out):
            store[i] = out
            return out.clone()
        return hook

    try:
        for i, (mod, fused) in enumerate(layers):
            handles.append(mod.register_forward_pre_hook(make(i, fused)) if fused else mod.register_forward_hook(make(i, fused)))
        yield store
    finally:
        for h in handles:
            h.remove()


def _psi(m: torch.Tensor, size: tuple[int, int], eps: float) -> torch.Tensor:
    """|m| min-max normalised per channel, then bilinear upsampling to ``size``, summed over channels: ``[B, H, W]``."""
    m = m.abs().float()
    lo = m.amin(dim=(2, 3), keepdim=True)
    span = m.amax(dim=(2, 3), keepdim=True) - lo
    if eps > 0:
        m = (m - lo) / (span + eps)
    else:
        m = torch.where(span > 0, (m - lo) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))
    # Upsampling is linear: the sum of the upsampled channels is the upsampled channel sum (one resize per layer).
    m = m.sum(dim=1, keepdim=True)
    if tuple(m.shape[-2:]) != tuple(size):
        m = upsample(m, size, "bilinear")
    return m[:, 0]


def fullgrad_terms(model: nn.Module, x: torch.Tensor, targets, categories=None, *, fused_norms: bool = True):
    """The unprocessed terms of Eq. 2: ``(class_idx, scores, logits, terms)`` where ``terms[j]`` is
    ``[grad_x S_j o x, b_1 o dS_j/dz_1, ...]`` (``[B, 3, H, W]`` then ``[B, C_l, h_l, w_l]`` per bias layer)
    for score column j. Call inside ``model_state``."""
    layers = bias_layers(model, fused_norms)
    # Each layer's bias (bias_layers keeps only layers that have one) and, for the fused layers,
    # d z / d u (None: the hooked tensor is z itself).
    biases: list[torch.Tensor] = []
    scales: list[torch.Tensor | None] = []
    for layer, fused in layers:
        bias = _effective_bias(layer)
        assert bias is not None
        biases.append(bias)
        scales.append(_bn_scale(layer) if fused else None)
    xin = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _capture_all(layers) as outs:
        logits = model(xin)
        idx, s = target_scores(logits, targets, categories)
    used = [i for i, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.requires_grad]
    terms = []
    k = s.shape[1]
    for j in range(k):
        grads = torch.autograd.grad(s[:, j].sum(), [xin] + [outs[i] for i in used], retain_graph=j < k - 1, allow_unused=True)
        gx = grads[0] if grads[0] is not None else torch.zeros_like(xin)
        col = [gx * xin.detach()]
        for i, g in zip(used, grads[1:], strict=True):
            if g is None:
                continue
            sc = scales[i]
            if sc is not None:
                sc = sc.to(g.dtype)
                g = g / torch.where(sc != 0, sc, torch.ones_like(sc))[None, :, None, None] * (sc != 0)[None, :, None, None]
            col.append(biases[i].to(g.dtype)[None, :, None, None] * g)
        terms.append(col)
    return idx, s.detach(), logits.detach(), terms


def fullgrad_maps(
    model: nn.Module, x: torch.Tensor, targets, categories=None, *, eps: float = 0.0, fused_norms: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(class_idx [B, k], scores [B, k], logits [B, C], maps [B, k, H, W])``; call inside ``model_state``."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    idx, s, logits, terms = fullgrad_terms(model, x, targets, categories, fused_norms=fused_norms)
    maps = [functools.reduce(operator.add, (_psi(t, size, eps) for t in col)) for col in terms]
    return idx, s, logits, torch.stack(maps, dim=1)


def run(call: MethodCall) -> MethodOutput:
    if call.layer is not None:
        raise ModelError("fullgrad uses the bias of every layer and the input; layer= does not apply to it")
    idx, s, logits, maps = fullgrad_maps(call.model, call.x, call.targets, call.categories)
    # The sum of ~50 maps in [0, 1] sits on a large floor; without it the CVPR16 box (tau * max) would take
    # the whole image. Subtracting each map's minimum is the paper's final min-max without the division.
    maps = maps - maps.amin(dim=(2, 3), keepdim=True)
    return MethodOutput(idx, s, logits, maps, "input")
