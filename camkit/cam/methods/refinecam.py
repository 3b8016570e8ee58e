"""RefineCAM (arXiv 2605.14641; pytorch-grad-cam 1.5.7's ``RefineCAM``): the product of several layers' maps.

Early layers give sharp but noisy maps, late layers coarse but clean ones; their product keeps what
all of them agree on. For layers ``l = 1..n`` and a base method (Grad-CAM++ by default, as the peer):

    N_l = minmax(Up(ReLU(L_l)))     bilinear upsampling to the input, then min-max to [0, 1]
    L   = prod_l N_l                 at the input's resolution [H, W], in [0, 1]

(min-max of a constant map gives 0, no epsilon). ``layer=`` takes the list of layers (or a
comma-separated string); None picks the last module of each of the last three resolutions of the
network (e.g. ResNet's layer2, layer3, layer4).

pytorch-grad-cam min-max normalises each layer's map before and after resizing (the second is what
remains: min-max is affine and bilinear resizing commutes with affine maps) with 1e-7 added to the
range, and its loop meant to re-normalise the maps rebinds a loop variable and does nothing; the
final min-max of the product only rescales it.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ModelError
from ..engine import upsample
from .base import (
    MethodCall,
    MethodOutput,
    activations_and_logits,
    display_layer,
    probe_spatial_layers,
    resolve_layer,
    target_scores,
)
from .gradient import gradient_maps


def stage_ends(model: nn.Module, x: torch.Tensor, n: int = 3) -> list[str]:
    """The last module (display names) of each of the last ``n`` spatial resolutions (>1x1, adaptive pools excluded)."""
    mods = dict(model.named_modules())
    shapes = [(name, s) for name, s in probe_spatial_layers(model, x)
              if s[2] * s[3] > 1 and not isinstance(mods[name], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    ends: dict[tuple[int, int], str] = {}
    for name, s in shapes:
        key = (s[2], s[3])
        ends.pop(key, None)  # dicts keep insertion order: re-inserting moves the resolution to the end
        ends[key] = name
    return [display_layer(model, name) for name in list(ends.values())[-n:]]


def normalized_up(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, k, h, w]`` -> ``minmax(Up(ReLU(maps)))`` ``[B, k, H, W]`` (constant map -> 0)."""
    m = maps.float().clamp_min(0)
    if tuple(m.shape[-2:]) != tuple(size):
        m = upsample(m, size, "bilinear")
    lo = m.amin(dim=(2, 3), keepdim=True)
    span = m.amax(dim=(2, 3), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def _layers(call: MethodCall) -> list[str]:
    layer = call.layer
    if layer is None:
        return stage_ends(call.model, call.x)
    names = [p.strip() for p in layer.split(",")] if isinstance(layer, str) else list(layer)
    if not names or not all(names):
        raise ModelError(f"refinecam needs one or more layer names, got {layer!r}")
    return names


def run(call: MethodCall, base: str = "gradcam++") -> MethodOutput:
    model, x = call.model, call.x
    size = (int(x.shape[-2]), int(x.shape[-1]))
    names = _layers(call)
    product = None
    idx = s = logits = None
    for name in names:
        full = resolve_layer(model, x, name)
        a, lg = activations_and_logits(model, x, full, need_grad=True)
        with torch.enable_grad():
            i, sc = target_scores(lg, call.targets, call.categories, idx)
            maps = normalized_up(gradient_maps(base, a, sc), size)
        if idx is None:
            idx, s, logits = i, sc.detach(), lg.detach()
        product = maps if product is None else product * maps
    assert product is not None and idx is not None and s is not None and logits is not None
    return MethodOutput(idx, s, logits, product, "+".join(names))
