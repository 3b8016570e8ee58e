"""``compute_method_maps``: one entry point for CAM, the gradient family, Score-CAM and Eigen-CAM."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import ClassSelectionError, ModelError
from ...models.cam_model import CAMModel
from ..engine import compute_cams
from . import ablation, dff, fem, finercam, fullgrad, guided, iscam, kpca, legrad, randomcam, refinecam, sess, shapley, smoothgradcampp, smoothing, sobel, sscam
from .base import (
    MethodBatch,
    MethodCall,
    Runner,
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
from .gradient import gradient_maps
from .scorecam import scorecam_maps, scorecam_weights


def default_method(model: nn.Module, layer: str | Sequence[str] | None = None) -> str:
    """The method used when none is named: ``"cam"`` where plain CAM applies, ``"gradcam"`` otherwise.

    Plain CAM applies to a :class:`~camkit.models.CAMModel` (a pool + linear head: ``cam_kind`` "exact" or
    "needs-finetune", whose untrained head still gives its maps) explained at its own feature map
    (``layer`` None or ``"features"``). Any other model or layer: Grad-CAM. The one rule for the API,
    ``camkit explain`` and ``camkit evaluate``.
    """
    own_map = layer is None or (isinstance(layer, str) and layer in ("features", "@features"))
    cam = isinstance(model, CAMModel) and getattr(model, "cam_kind", "exact") != "gradient" and own_map
    return "cam" if cam else "gradcam"


def compute_method_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "cam",
    classes: Targets = 5,
    layer: str | Sequence[str] | None = None,
    batch_size: int = 32,
    *,
    seed: int = 0,
    smooth: str | None = None,
) -> MethodBatch:
    """Maps of ``classes`` for the normalised input ``x [B, 3, H, W]`` by ``method``.

    Args:
        model: a :class:`~camkit.models.CAMModel`, a :class:`~camkit.models.classifier_model.ClassifierModel`
            or any ``nn.Module`` returning logits ``[B, C]``.
        method: one of :data:`~camkit.cam.methods.METHODS` (``cam`` needs a CAMModel and its own map).
        classes: top-k (int), class ids or names for every image, one list per image, an int64 tensor
            ``[k]`` or ``[B, k]``, or a callable ``fn(logits [N, C]) -> [N]`` or ``[N, k]`` (row-wise) whose
            values are explained instead of class logits.
        layer: target layer name (``"features.28"``, ``"layer4"``); None = the map the head consumes
            (see :mod:`camkit.cam.methods.base`). A bad name is a one-line :class:`ModelError` listing
            the candidates.
        batch_size: Score-CAM's masked inputs per forward pass.
        seed: seed of the methods that draw noise (Smooth Grad-CAM++, SS-CAM): same seed, same maps.
        smooth: None, ``"aug"`` (test-time augmentation: flips x scales, maps averaged in the input's frame)
            or ``"eigen"`` (first principal component of the weighted activations); see
            :mod:`camkit.cam.methods.smoothing`. ``layer`` may also be a list of layers: the per-layer
            maps are fused at the input resolution (mean of min-max maps; LayerCAM: its paper's
            tanh + max). Smoothed and fused maps are ``[B, k, H, W]``; LeGrad takes a list of blocks itself.

    Gradient methods turn on gradients themselves (an outer ``torch.no_grad()`` is fine; inside
    ``torch.inference_mode()`` they raise). During the call the model is in eval mode with frozen
    parameters; its modes and ``requires_grad`` flags are restored afterwards. Hooks are registered for
    the call only and removed in ``finally``.
    """
    info = method_info(method)
    name = info.name
    categories = getattr(model, "categories", None)
    if isinstance(layer, (list, tuple)) and name not in ("legrad", "refinecam"):
        return smoothing.multi_layer(compute_method_maps, model, x, name, classes, list(layer), batch_size, seed, smooth)
    if smooth is not None:
        return smoothing.smoothed(compute_method_maps, _batch, model, x, name, classes, layer, batch_size, seed, smooth)
    if name == "cam":
        if not isinstance(model, CAMModel):
            raise ModelError(
                f"plain CAM is exact only for a pool+linear head; {getattr(model, 'name', type(model).__name__)} has "
                "another head: use a gradient or perturbation method (gradcam, ...)"
            )
        if layer not in (None, "features"):
            raise ModelError("plain CAM uses the feature map the head pools; a layer applies to the other methods")
        if callable(classes):  # a custom target function (a tensor of class ids is not callable)
            raise ClassSelectionError("plain CAM explains classes; pass class ids/names, or use a gradient method for a custom score")
        with model_state(model, freeze=False):
            r = compute_cams(model, x, classes)
        return MethodBatch(r.logits, r.probs, r.class_idx, r.scores, r.maps.float(), r.bias, method="cam", layer="features")

    if info.needs_gradients:
        check_grad_allowed(name)
    runner = RUNNERS.get(name)
    if runner is not None:
        with model_state(model, freeze=True):
            out = runner(MethodCall(model, x, layer, classes, categories, batch_size, seed=seed))
        return _batch(name, out.logits, out.class_idx, out.scores, out.maps, out.layer)
    full = resolve_layer(model, x, layer)
    with model_state(model, freeze=True):
        if info.needs_gradients:
            a, logits = activations_and_logits(model, x, full, need_grad=True)
            with torch.enable_grad():
                idx, s = target_scores(logits, classes, categories)
                maps = gradient_maps(name, a, s)
            logits = logits.detach()
            s = s.detach()
        else:
            with torch.inference_mode():
                a, logits = activations_and_logits(model, x, full, need_grad=False)
                idx, s = target_scores(logits, classes, categories)
                if name == "scorecam":
                    alpha = scorecam_weights(model, x, a, _selector(classes, idx, categories), batch_size)
                    maps = scorecam_maps(a, alpha)
                else:
                    maps = eigencam_maps(a).unsqueeze(1).expand(-1, idx.shape[1], -1, -1).contiguous()
    return _batch(name, logits, idx, s, maps, display_layer(model, full))


def _batch(name: str, logits: torch.Tensor, idx: torch.Tensor, s: torch.Tensor, maps: torch.Tensor, layer: str) -> MethodBatch:
    """Softmax scores for class targets, the callable's values for a custom target; zero bias."""
    probs = logits.float().softmax(dim=1)
    custom = bool((idx < 0).any())
    scores = s.float() if custom else probs.gather(1, idx)
    bias = torch.zeros(idx.shape, dtype=torch.float32, device=maps.device)
    return MethodBatch(logits, probs, idx, scores, maps.float(), bias, method=name, layer=layer)


# Methods with their own pipeline (perturbations, input-resolution maps, several layers, ...):
# name -> runner(MethodCall) -> MethodOutput. The others (CAM, the a/g gradient family, Score-CAM,
# Eigen-CAM) are computed inline above.
RUNNERS: dict[str, Runner] = {
    "fem": fem.run,
    "kpcacam": kpca.run,
    "randomcam": randomcam.run,
    "shapleycam": shapley.run,
    "ablationcam": ablation.run,
    "fullgrad": fullgrad.run,
    "guidedbackprop": guided.run_guided_backprop,
    "guidedgradcam": guided.run_guided_gradcam,
    "finercam": finercam.run,
    "refinecam": refinecam.run,
    "sobelcam": sobel.run,
    "dff": dff.run,
    "sess": sess.run,
}
RUNNERS.update({"smoothgradcam++": smoothgradcampp.run, "sscam": sscam.run, "iscam": iscam.run, "legrad": legrad.run})


#: Runners that, like the methods computed inline, read only the target layer's activations (or gradients) and the
#: logits of (perturbed or ablated) forwards.
_LAYER_AND_LOGIT_RUNNERS = frozenset({"sscam", "iscam", "smoothgradcam++", "ablationcam"})


def reads_layer_and_logits_only(method: str) -> bool:
    """True for a method computed from its target layers' activations (and their gradients) and the logits alone:
    the network in between may be any that computes the same function (e.g. with its batch norms folded into
    its convolutions, :mod:`camkit.models.batchnorm_fold`). Not: plain CAM, and the other runners (every layer's
    biases, guided backward passes through the activation modules, other layers, ...)."""
    name = method_info(method).name
    return name != "cam" and (name not in RUNNERS or name in _LAYER_AND_LOGIT_RUNNERS)


def _selector(classes: Targets, idx: torch.Tensor, categories):
    """Scores of masked inputs: the selected classes' logits of their image, or the callable's values."""
    if callable(classes) and not isinstance(classes, torch.Tensor):

        def sel_fn(logits: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
            return target_scores(logits, classes, categories)[1]

        return sel_fn

    def sel(logits: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, idx[sample])

    return sel
