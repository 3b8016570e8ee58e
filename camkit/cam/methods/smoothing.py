"""Map smoothing and multi-layer fusion on top of any CAM method.

``smooth="aug"`` (test-time augmentation): the method runs on every augmented copy ``T(X)`` for
``T`` in {identity, horizontal flip} x {spatial scales 0.9, 1.0, 1.1} (the input resized by the scale,
bilinear); each raw map is brought back to the original frame and the maps are averaged:

    L = (1/|T|) sum_T Up_{H x W}(T^-1 L(T(X)))

Under camkit's grid convention (a map's cells tile the image it was computed on evenly, cell centres at
``(i + 0.5) * H / h``; the same convention as :func:`~camkit.cam.geometry.to_original`), the inverse is
exact: a flip maps cell ``i`` to cell ``w - 1 - i``, and a map of the resized image covers the same field
of view, so it is resampled (bilinear, align_corners=False) straight to the input's ``H x W``. The
classes are chosen on the original image and the same classes are explained on every copy. The result
is at the input resolution and in the method's raw units (the maps are averaged before any
normalisation). pytorch-grad-cam's ``aug_smooth`` uses {flip} x {intensity x 0.9, 1, 1.1} and averages
maps already min-max normalised per copy; with flips alone and a positively homogeneous network (where
intensity scaling only rescales the map) the two agree, which the tests check.

``smooth="eigen"``: the map is the first principal component of the *weighted activations*
``W_k(i, j) A_k(i, j)`` (the terms whose channel sum is the method's map), as pytorch-grad-cam's
``eigen_smooth`` (its ``get_2d_projection``): positions are observations, channels features, centred
per channel; camkit fixes the SVD's sign so the strongest response is positive (see
:mod:`camkit.cam.methods.eigencam`). Supported for CAM, the gradient family whose channel weights
depend on the channel alone (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Grad-CAM
element-wise: the weighted activations are the method applied to each channel on its own) and the
Score-CAM family (``alpha_k A_k``).

Several layers (``layer=["layer3", "layer4"]``): each layer's raw map ``L_l`` is made ``ReLU`` ->
min-max to [0, 1] at its own resolution -> upsampled (bilinear) to ``H x W``, and the layers are
averaged (pytorch-grad-cam's ``compute_cam_per_layer`` + ``aggregate_multi_layers``, whose final
min-max is left to the downstream normalisation). For ``method="layercam"`` the LayerCAM paper's
fusion is used instead (Jiang et al., TIP 2021, Eq. 9 and Sec. 3.3): each map is scaled as
``tanh(gamma * ReLU(L_l) / max ReLU(L_l))`` with ``gamma = 2`` and the upsampled maps are combined by
the element-wise maximum (torch-cam's ``LayerCAM.fuse_cams``; torch-cam applies the tanh to min-max
normalised maps, which is the same whenever a map's minimum after the ReLU is 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...choices import one_of
from ...errors import ModelError, ParameterError
from ...models.cam_model import CAMModel
from ..engine import upsample
from .base import (
    MethodBatch,
    MethodOutput,
    Targets,
    activations_and_logits,
    check_grad_allowed,
    display_layer,
    method_info,
    model_state,
    resolve_layer,
    target_scores,
)
from .eigencam import eigencam_maps
from .gradient import GRADIENT_METHODS
from .iscam import iscam_weights
from .scorecam import scorecam_weights
from .smoothgradcampp import score_selector
from .sscam import sscam_weights

# compute_method_maps itself, handed in by the API (this module runs the method on copies / layers).
Compute = Callable[..., MethodBatch]

SMOOTHINGS = ("aug", "eigen")


def check_smooth(smooth: str | None) -> str | None:
    """``smooth`` when it is None or one of :data:`SMOOTHINGS`; otherwise :class:`ParameterError`."""
    return None if smooth is None else one_of("smooth", smooth, SMOOTHINGS, "a smoothing")
AUG_SCALES = (0.9, 1.0, 1.1)
AUG_FLIPS = (False, True)
LAYERCAM_GAMMA = 2.0


def to_input(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps ``[B, k, h, w]`` -> ``[B, k, H, W]`` (bilinear, align_corners=False; unchanged when already that size)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return upsample(maps.float(), size, "bilinear")


def _class_spec(r: MethodBatch, classes: Targets) -> Targets:
    """The classes chosen for the original image, to explain the same ones on every copy / layer."""
    if callable(classes) and not isinstance(classes, torch.Tensor):
        return classes
    return r.class_idx


def augmented_maps(
    compute: Compute,
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    classes: Targets,
    layer,
    batch_size: int,
    seed: int,
    scales: Sequence[float] = AUG_SCALES,
    flips: Sequence[bool] = AUG_FLIPS,
) -> tuple[MethodBatch, list[torch.Tensor]]:
    """``(result on the original image, [maps of every augmented copy in the original frame, [B, k, H, W]])``;
    ``compute`` is :func:`~camkit.cam.methods.compute_method_maps`."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    base = compute(model, x, method, classes, layer, batch_size, seed=seed)
    spec = _class_spec(base, classes)
    out = []
    for s in scales:
        for flip in flips:
            if float(s) == 1.0 and not flip:
                out.append(to_input(base.maps, size))
                continue
            xs = x
            if float(s) != 1.0:
                hw = (max(1, round(size[0] * float(s))), max(1, round(size[1] * float(s))))
                xs = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=float(s) < 1.0)
            if flip:
                xs = xs.flip(-1)
            r = compute(model, xs, method, spec, layer, batch_size, seed=seed)
            m = r.maps.flip(-1) if flip else r.maps
            out.append(to_input(m, size))
    return base, out


def aug_smooth(compute: Compute, model, x, method, classes, layer, batch_size, seed) -> MethodBatch:
    """``smooth="aug"``: the mean of :func:`augmented_maps` (see the module docstring)."""
    base, maps = augmented_maps(compute, model, x, method, classes, layer, batch_size, seed)
    return dataclasses.replace(base, maps=torch.stack(maps).mean(dim=0))


# ---------------------------------------------------------------- several layers


def fuse_layers(maps: Sequence[torch.Tensor], size: tuple[int, int], method: str) -> torch.Tensor:
    """Fused ``[B, k, H, W]`` of per-layer raw maps (see the module docstring), in [0, 1]."""
    out = []
    for m in maps:
        m = m.float().clamp_min(0)
        if method == "layercam":
            top = m.amax(dim=(-2, -1), keepdim=True)
            m = torch.tanh(LAYERCAM_GAMMA * m / torch.where(top > 0, top, torch.ones_like(top)))
        else:
            lo = m.amin(dim=(-2, -1), keepdim=True)
            span = m.amax(dim=(-2, -1), keepdim=True) - lo
            m = torch.where(span > 0, (m - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(m))
        out.append(to_input(m, size))
    stacked = torch.stack(out)
    return stacked.amax(dim=0) if method == "layercam" else stacked.mean(dim=0)


def multi_layer(compute: Compute, model, x, method, classes, layers: Sequence[str], batch_size, seed, smooth) -> MethodBatch:
    """``layer=[...]``: the method at every layer (with ``smooth`` per layer), fused; classes chosen once."""
    if not layers:
        raise ParameterError("layer", [], "names no layer: give at least one")
    size = (int(x.shape[-2]), int(x.shape[-1]))
    first = compute(model, x, method, classes, layers[0], batch_size, seed=seed, smooth=smooth)
    spec = _class_spec(first, classes)
    maps = [first.maps]
    names = [first.layer]
    for lay in layers[1:]:
        r = compute(model, x, method, spec, lay, batch_size, seed=seed, smooth=smooth)
        maps.append(r.maps)
        names.append(r.layer)
    return dataclasses.replace(first, maps=fuse_layers(maps, size, first.method), layer="+".join(names))


# ---------------------------------------------------------------- eigen smoothing


def channelwise(fn, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Weighted activations ``[B, K, h, w]`` of a gradient method whose channel weight depends on its own
    channel only: the method run on every channel as a one-channel layer (its h*w scaling kept)."""
    b, k, h, w = a.shape
    return fn(a.reshape(b * k, 1, h, w), g.reshape(b * k, 1, h, w)).reshape(b, k, h, w)


CHANNEL_LOCAL = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "gradcamelementwise")
SCORE_FAMILY = ("scorecam", "sscam", "iscam")


def eigen_smooth(model, x, method: str, classes, layer, batch_size, seed) -> MethodOutput:
    """``smooth="eigen"``: first principal component of the weighted activations, per image and class."""
    name = method_info(method).name
    if name not in ("cam", "eigencam") + CHANNEL_LOCAL + SCORE_FAMILY:
        raise ParameterError("smooth", "eigen", f"does not apply to {name}: use it with cam, {', '.join(CHANNEL_LOCAL + SCORE_FAMILY)} or eigencam")
    categories = getattr(model, "categories", None)
    if name == "cam":
        if not isinstance(model, CAMModel):
            raise ModelError("plain CAM needs a pool+linear head; use another method with smooth='eigen'")
        full = None
    else:
        full = resolve_layer(model, x, layer)
    if name in CHANNEL_LOCAL:
        check_grad_allowed(name)
    with model_state(model, freeze=True):
        if name in CHANNEL_LOCAL:
            fn = GRADIENT_METHODS[name]
            a, logits = activations_and_logits(model, x, full, need_grad=True)
            with torch.enable_grad():
                idx, s = target_scores(logits, classes, categories)
                k = s.shape[1]
                maps = []
                for j in range(k):
                    (g,) = torch.autograd.grad(s[:, j].sum(), a, retain_graph=j < k - 1, allow_unused=True)
                    g = torch.zeros_like(a) if g is None else g
                    maps.append(eigencam_maps(channelwise(fn, a.detach(), g.detach())))
            logits, s = logits.detach(), s.detach()
        else:
            with torch.inference_mode():
                a, logits = activations_and_logits(model, x, full, need_grad=False)
                idx, s = target_scores(logits, classes, categories)
                if name == "eigencam":  # its own weighted activations are A itself
                    wts = torch.ones(idx.shape + a.shape[1:2], dtype=torch.float32, device=a.device)
                elif name == "cam":
                    wts = model.classifier.weight[idx].float()  # [B, k, K]
                else:
                    sel = score_selector(classes, idx, categories)
                    if name == "scorecam":
                        alpha = scorecam_weights(model, x, a, sel, batch_size)
                    elif name == "sscam":
                        alpha = sscam_weights(model, x, a, sel, batch_size, seed=seed)
                    else:
                        alpha = iscam_weights(model, x, a, sel, batch_size)
                    wts = alpha.transpose(1, 2)  # [B, k, K]
                maps = [eigencam_maps(wts[:, j, :, None, None] * a.float()) for j in range(idx.shape[1])]
    return MethodOutput(idx, s.detach(), logits.detach(), torch.stack(maps, dim=1), display_layer(model, full))


def smoothed(compute: Compute, wrap: Callable[..., MethodBatch], model, x, method, classes, layer, batch_size, seed, smooth) -> MethodBatch:
    """Dispatch of ``smooth=`` (one layer); ``wrap(name, logits, class_idx, scores, maps, layer)`` makes the
    MethodBatch of a :class:`MethodOutput`. Unknown values are a :class:`ParameterError`."""
    if smooth == "aug":
        return aug_smooth(compute, model, x, method, classes, layer, batch_size, seed)
    if smooth == "eigen":
        out = eigen_smooth(model, x, method, classes, layer, batch_size, seed)
        return wrap(method_info(method).name, out.logits, out.class_idx, out.scores, out.maps, out.layer)
    check_smooth(smooth)
    raise AssertionError(f"smoothing {smooth!r} is listed but not dispatched")
