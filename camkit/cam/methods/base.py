"""Shared machinery of the CAM method family: the method table, target layers, per-call hooks, targets.

Conventions every method follows:

- The *target layer* is a module whose output is a feature map ``A [B, K, h, w]``. By default it is
  the map the head consumes: ``CAMModel.features`` for a :class:`~camkit.models.CAMModel`, the
  model's ``default_layer`` for a :class:`~camkit.models.classifier_model.ClassifierModel`, and for
  any other ``nn.Module`` the last module (in execution order) with a 4-D output larger than 1x1
  that is not an adaptive pool (adaptive pools only resize for the head). ``layer="features.28"``
  overrides it; names are the network's own (``net.`` may be left out for camkit models).
- Hooks live inside one call: registered in a ``with`` block and removed in ``finally``, even when
  the forward raises.
- During a call the model runs in eval mode with every parameter's ``requires_grad`` off; both are
  restored afterwards, module by module and parameter by parameter.
- Token layers (vision transformers): when the model passed in has an attribute
  ``reshape_activations`` (a callable: the target layer's output, e.g. tokens ``[B, N, C]`` ->
  ``[B, C, h, w]``), every method sees ``A = reshape_activations(output)`` and gradients with respect
  to that map. The callable must be a linear rearrangement (drop the class/register tokens, reshape,
  permute), built from differentiable torch ops. The network still runs on the layer's own output;
  the gradient of a score S with respect to A is ``R(dS/d output)`` (R applied to the token
  gradient, as pytorch-grad-cam's ``reshape_transform`` does), and second derivatives (ShapleyCAM)
  pass through R as well. Layer probing (automatic layer, ``layer=`` checks) applies it to 3-D outputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ClassSelectionError, ModelError, ParameterError
from ...models.cam_model import CAMModel
from ..engine import CAMBatch, ClassSpec, select_classes

# A custom target: logits [N, C] -> scores [N] or [N, k]; each row may depend only on its own row.
TargetFn = Callable[[torch.Tensor], torch.Tensor]
Targets = ClassSpec | TargetFn


@dataclass(frozen=True)
class MethodInfo:
    """One entry of :data:`METHODS`."""

    name: str
    title: str
    paper: str
    needs_gradients: bool
    class_specific: bool = True
    # "layer": maps at the target layer's resolution h x w; "input": maps at the input's H x W
    # (pixel-space methods: FullGrad, Guided Backprop, Guided Grad-CAM, RefineCAM, SESS, Sobel).
    resolution: str = "layer"
    # False: the method has no target layer (it explains the input: FullGrad, Guided Backprop, Sobel);
    # passing layer= to it is an error.
    takes_layer: bool = True


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("cam", "CAM", "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016 (arXiv 1512.04150)", False),
        MethodInfo("gradcam", "Grad-CAM", "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017 (arXiv 1610.02391)", True),
        MethodInfo("gradcam++", "Grad-CAM++", "Chattopadhay et al., Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks, WACV 2018 (arXiv 1710.11063)", True),
        MethodInfo("xgradcam", "XGrad-CAM", "Fu et al., Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs, BMVC 2020 (arXiv 2008.02312)", True),
        MethodInfo("layercam", "LayerCAM", "Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for Localization, IEEE TIP 2021", True),
        MethodInfo("hirescam", "HiResCAM", "Draelos & Carin, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural networks (arXiv 2011.08891)", True),
        MethodInfo("scorecam", "Score-CAM", "Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, CVPR-W 2020 (arXiv 1910.01279)", False),
        MethodInfo("eigencam", "Eigen-CAM", "Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, IJCNN 2020 (arXiv 2008.00299)", False, class_specific=False),
        MethodInfo("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, WACV 2020", False),
        MethodInfo("eigengradcam", "Eigen-Grad-CAM", "First principal component of gradient x activation (Eigen-CAM, Muhammad & Yeasin, IJCNN 2020, applied to dS/dA o A as in pytorch-grad-cam)", True),
        MethodInfo("segeigencam", "Seg-Eigen-CAM", "Chung & Ying, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models, Applied Sciences 15(13) 7562, 2025", True),
        MethodInfo("gradcamelementwise", "Grad-CAM element-wise", "Element-wise Grad-CAM: sum_k ReLU(dS/dA_k o A_k), the HiResCAM variant of pytorch-grad-cam (Gildenblat et al., github.com/jacobgil/pytorch-grad-cam)", True),
        MethodInfo("kpcacam", "KPCA-CAM", "Karmani et al., KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA, MMSP 2024 (arXiv 2410.00267)", False, class_specific=False),
        MethodInfo("fem", "FEM", "Fuad et al., Features Understanding in 3D CNNs for Actions Recognition in Video, IPTA 2020 (hal-02963298)", False, class_specific=False),
        MethodInfo("shapleycam", "ShapleyCAM", "Cai et al., CAMs as Shapley Value-based Explainers (arXiv 2501.06261)", True),
        MethodInfo("finercam", "Finer-CAM", "Zhang et al., Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation, CVPR 2025 (arXiv 2501.11309)", True),
        MethodInfo("randomcam", "Random-CAM", "Baseline: sum_k w_k A_k with seeded uniform(-1, 1) weights (pytorch-grad-cam's RandomCAM), a floor for the metrics", False),
        MethodInfo("fullgrad", "FullGrad", "Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019 (arXiv 1905.00780)", True, resolution="input", takes_layer=False),
        MethodInfo("guidedbackprop", "Guided Backprop", "Springenberg et al., Striving for Simplicity: The All Convolutional Net, ICLR-W 2015 (arXiv 1412.6806)", True, resolution="input", takes_layer=False),
        MethodInfo("guidedgradcam", "Guided Grad-CAM", "Selvaraju et al., Grad-CAM, ICCV 2017 (arXiv 1610.02391), Sec. 3.1: Guided Backprop o upsampled Grad-CAM", True, resolution="input"),
        MethodInfo("refinecam", "RefineCAM", "RefineCAM (arXiv 2605.14641, pytorch-grad-cam 1.5.7): product of the min-max normalised Grad-CAM++ maps of several layers", True, resolution="input"),
        MethodInfo("sess", "SESS", "Tyagi et al., SESS: Saliency Enhancing with Scaling and Sliding, ECCV 2022 (arXiv 2207.01769)", True, resolution="input"),
        MethodInfo("sobelcam", "Sobel", "Baseline: Sobel gradient magnitude of the grey image (pytorch-grad-cam's sobel_cam), class- and model-agnostic", False, class_specific=False, resolution="input", takes_layer=False),
        MethodInfo("dff", "Deep Feature Factorization", "Collins et al., Deep Feature Factorization for Concept Discovery, ECCV 2018 (arXiv 1806.10206)", False),
        MethodInfo("smoothgradcam++", "Smooth Grad-CAM++", "Omeiza et al., Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep Convolutional Neural Network Models (arXiv 1908.01224)", True),
        MethodInfo("sscam", "SS-CAM", "Wang, Naidu et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization (arXiv 2006.14255)", False),
        MethodInfo("iscam", "IS-CAM", "Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based explanations (arXiv 2010.03023)", False),
        MethodInfo("legrad", "LeGrad", "Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation Sensitivity, ICCV 2025 (arXiv 2404.03214)", True),
    )
}


def method_info(method: str) -> MethodInfo:
    """The table entry for ``method`` (case-insensitive; ``grad-cam`` and ``gradcampp`` are accepted)."""
    key = method.strip().lower().replace("-", "").replace("_", "")
    key = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "deepfeaturefactorization": "dff",
           "guidedbp": "guidedbackprop", "sobel": "sobelcam", "random": "randomcam", "ablation": "ablationcam",
           "smoothgradcampp": "smoothgradcam++", "smoothgradcamplusplus": "smoothgradcam++"}.get(key, key)
    if key not in METHODS:
        raise ModelError(f"unknown CAM method {method!r}; use one of {', '.join(METHODS)}")
    return METHODS[key]


# ---------------------------------------------------------------- model state


@contextmanager
def model_state(model: nn.Module, freeze: bool = True) -> Iterator[None]:
    """Eval mode and (optionally) frozen parameters for one call; the previous state comes back in ``finally``."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        for m, t in modes:
            m.training = t


def check_grad_allowed(method: str) -> None:
    """Gradient methods turn gradients on themselves (an outer ``no_grad`` is fine); inference mode forbids it."""
    if torch.is_inference_mode_enabled():
        raise ModelError(
            f"method {method!r} needs gradients, which torch.inference_mode() forbids; call it outside "
            "inference_mode (an outer torch.no_grad() is fine), or use method='cam', 'scorecam' or 'eigencam'"
        )


# ---------------------------------------------------------------- target layers


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def _display(name: str, model: nn.Module) -> str:
    """Names as users write them: without the ``net.`` prefix of camkit's wrappers."""
    return name[4:] if name.startswith("net.") and hasattr(model, "net") else name


def probe_spatial_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of every module whose output is a 4-D tensor, in execution order.

    One forward of ``x[:1]`` with a hook on every module (all removed in ``finally``).
    """
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    reshape = reshape_of(model)

    def make(name: str):
        def hook(_m, _i, out):
            if isinstance(out, torch.Tensor) and out.dim() == 3 and reshape is not None:
                try:
                    out = reshape(out)
                except (RuntimeError, ValueError, IndexError):  # a token tensor of another layout: not a map
                    return
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                seen.append((name, tuple(out.shape)))

        return hook

    try:
        for name, m in model.named_modules():
            if name:
                handles.append(m.register_forward_hook(make(name)))
        with torch.no_grad(), model_state(model, freeze=False):
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    # A module called several times (a shared ReLU) counts once, at its last call.
    last: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    for name, shape in seen:
        if name in last:
            order.remove(name)
        last[name] = shape
        order.append(name)
    return [(n, last[n]) for n in order]


_AUTO_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], str]] = weakref.WeakKeyDictionary()


def auto_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last module with a spatial (>1x1) 4-D output that is not an adaptive pool (cached per input size)."""
    key = (int(x.shape[-2]), int(x.shape[-1]))
    cache = _AUTO_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    mods = _modules(model)
    cands = [
        n for n, s in probe_spatial_layers(model, x)
        if s[2] * s[3] > 1 and not isinstance(mods[n], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
    ]
    if not cands:
        raise ModelError(f"{type(model).__name__} has no layer with a spatial 4-D output at input size {key}; it cannot give CAMs")
    cache[key] = cands[-1]
    return cands[-1]


_CHECKED: weakref.WeakKeyDictionary[nn.Module, set] = weakref.WeakKeyDictionary()


def _candidates_text(model: nn.Module, x: torch.Tensor, limit: int = 12) -> str:
    cands = [(n, s) for n, s in probe_spatial_layers(model, x) if s[2] * s[3] > 1]
    names = [f"{_display(n, model)} {s[2]}x{s[3]}" for n, s in cands]
    if len(names) > limit:
        return f"{len(names)} in all, the last {limit}: " + ", ".join(names[-limit:])
    return ", ".join(names)


def layer_spec(layer: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """One way to name the target: None (automatic; also for an empty list), one layer name, or a tuple of
    several (a method fuses their maps). A one-element list becomes that name."""
    if layer is None or isinstance(layer, str):
        return layer
    names = tuple(layer)
    return None if not names else names[0] if len(names) == 1 else names


def resolve_layer(model: nn.Module, x: torch.Tensor, layer: str | Sequence[str] | None) -> str | None:
    """Full module name of the target layer, or None for a CAMModel's own ``features`` output.

    Raises :class:`ModelError` (one line, listing layers with spatial outputs) when ``layer`` does not
    exist or its output is not a spatial 4-D map, :class:`ParameterError` for a list of layers (the
    API fuses several layers itself; only LeGrad and RefineCAM take a list).
    """
    if layer is not None and not isinstance(layer, str):
        raise ParameterError("layer", list(layer), "names several layers; this method takes one")
    if layer is None:
        if isinstance(model, CAMModel):
            return None
        default = getattr(model, "default_layer", None)
        return _full_name(model, default) if default else auto_layer(model, x)
    if isinstance(model, CAMModel) and layer in ("features", "@features"):
        return None
    full = _full_name(model, layer)
    key = (full, int(x.shape[-2]), int(x.shape[-1]))
    checked = _CHECKED.setdefault(model, set())
    if key in checked:
        return full
    if full is None:
        raise ModelError(
            f"no layer named {layer!r} in {getattr(model, 'name', type(model).__name__)}; layers with a spatial "
            f"output (pass one as layer): {_candidates_text(model, x)}"
        )
    shapes = dict(probe_spatial_layers(model, x))
    if full not in shapes or shapes[full][2] * shapes[full][3] <= 1:
        what = "is not run by the forward pass or has no 4-D output" if full not in shapes else f"outputs a {shapes[full][2]}x{shapes[full][3]} map"
        raise ModelError(
            f"layer {layer!r} {what}, so it has no spatial map to explain; layers with a spatial output: "
            f"{_candidates_text(model, x)}"
        )
    checked.add(key)  # validated once per model, layer and input size (the probe costs a forward)
    return full


def layer_modules(model: nn.Module, layer: str | Sequence[str] | None) -> list[str]:
    """Full module names of the layers ``layer`` names (one name or several; ``features`` and names that
    match no module are left out: no module, or an error the method reports itself)."""
    names = [] if layer is None else [layer] if isinstance(layer, str) else list(layer)
    return [full for name in names if (full := _full_name(model, name)) is not None]


def _full_name(model: nn.Module, layer: str) -> str | None:
    mods = _modules(model)
    for cand in (layer, "net." + layer):
        if cand in mods and cand:
            return cand
    return None


def display_layer(model: nn.Module, full: str | None) -> str:
    """The target layer's name as reported to users (``features`` for a CAMModel's own map)."""
    return "features" if full is None else _display(full, model)


# ---------------------------------------------------------------- per-call capture


Reshape = Callable[[torch.Tensor], torch.Tensor]


def reshape_of(model: nn.Module) -> Reshape | None:
    """The model's ``reshape_activations`` callable (token layer output -> ``[B, C, h, w]``), or None."""
    fn = getattr(model, "reshape_activations", None)
    return fn if callable(fn) else None


def as_map(out: torch.Tensor, reshape: Reshape | None, make_leaf: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(A, replacement)`` for a layer output: ``A`` the map the methods use, ``replacement`` what the
    network continues from (None: the output itself, unchanged).

    ``make_leaf``: ``A`` is a fresh leaf requiring grad and the replacement equals the output in value but
    depends on ``A`` (a copy of it, or ``out + R^T(A) - R^T(A).detach()`` through a reshape R, whose
    adjoint ``R^T`` autograd supplies), so gradients with respect to A are taken through the rest of the
    network. Without ``make_leaf`` A is a detached copy (in-place ops downstream cannot change it).
    """
    if reshape is None:
        if not make_leaf:
            return out.detach().clone(), None
        a = out.detach().requires_grad_(True)
        return a, a.clone()
    if not make_leaf:
        with torch.no_grad():
            return reshape(out.detach()).clone(), None
    with torch.enable_grad():
        t = out.detach().requires_grad_(True)
        r = reshape(t)
        a = r.detach().requires_grad_(True)
        (back,) = torch.autograd.grad(r, t, grad_outputs=a, create_graph=True)  # R^T a, linear in a
        return a, out.detach() + (back - back.detach())


@contextmanager
def capture(module: nn.Module, make_leaf: bool, reshape: Reshape | None = None) -> Iterator[dict]:
    """Forward hook for one call: ``store["a"]`` is the module's (last) output ``[B, K, h, w]``.

    ``make_leaf``: the stored tensor is a fresh leaf that requires grad and the network continues from a
    copy of it, so the graph starts at this layer (everything upstream is gradient-free when parameters
    are frozen) and in-place ops downstream (``ReLU(inplace=True)``) cannot modify it. Without
    ``make_leaf`` the output is cloned for the same reason. ``reshape``: see :func:`as_map`. The hook is
    removed in ``finally``.
    """
    store: dict = {}

    def hook(_m, _inp, out):
        want = 3 if reshape is not None else 4
        if not isinstance(out, torch.Tensor) or out.dim() not in (want, 4):
            store["bad"] = type(out).__name__ if not isinstance(out, torch.Tensor) else f"{out.dim()}-D tensor"
            return None
        a, replacement = as_map(out, reshape if out.dim() == 3 else None, make_leaf)
        store["a"] = a
        return replacement

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def activations_and_logits(
    model: nn.Module, x: torch.Tensor, full_layer: str | None, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, logits)``; with ``need_grad`` A is a leaf requiring grad and logits depend on it.

    Call inside :func:`model_state` (frozen parameters); with ``need_grad`` this enables gradients itself.
    """
    if need_grad and x.is_inference():
        x = x.clone()  # an inference tensor cannot enter an autograd graph; a clone made here can
    grad_ctx = torch.enable_grad() if need_grad else torch.no_grad()
    with grad_ctx:
        reshape = reshape_of(model)
        if full_layer is None:
            assert isinstance(model, CAMModel)
            f = model.features(x)
            if reshape is None and not need_grad:
                return f, model.head(f)
            a, replacement = as_map(f, reshape if f.dim() == 3 else None, need_grad)
            logits = model.head(f if replacement is None else replacement)
            return a, logits
        module = model.get_submodule(full_layer)
        with capture(module, need_grad, reshape) as store:
            logits = model(x)
        if "a" not in store:
            what = store.get("bad", "nothing (the layer was not run)")
            raise ModelError(f"layer {_display(full_layer, model)!r} produced {what}, not a [B, K, h, w] feature map")
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ModelError(f"the model returned {type(logits).__name__}, not logits [B, C]; wrap it so forward returns a tensor")
        return store["a"], logits


# ---------------------------------------------------------------- targets


def target_scores(
    logits: torch.Tensor, targets: Targets, categories: list[str] | None, class_idx: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class_idx [B, k], scores [B, k])``: the scores to explain, differentiable in ``logits``.

    ``targets`` is a :data:`~camkit.cam.engine.ClassSpec` (the class logits are the scores) or a callable
    ``fn(logits [B, C]) -> [B]`` or ``[B, k]`` (class_idx is then all -1). ``class_idx`` given: reuse it.
    """
    if callable(targets) and not isinstance(targets, torch.Tensor):
        s = targets(logits)
        if not isinstance(s, torch.Tensor) or s.dim() not in (1, 2) or s.shape[0] != logits.shape[0]:
            raise ClassSelectionError("a target callable must return a tensor [B] or [B, k] from logits [B, C]")
        s = s.reshape(logits.shape[0], -1)
        return torch.full(s.shape, -1, dtype=torch.int64, device=s.device), s
    idx = class_idx if class_idx is not None else select_classes(logits.detach(), targets, categories).to(logits.device)
    if idx.is_inference() and not torch.is_inference_mode_enabled():
        idx = idx.clone()  # e.g. class_idx from compute_cams: an inference tensor cannot be saved for backward
    return idx, logits.gather(1, idx)


# ---------------------------------------------------------------- runners (methods with their own pipeline)


@dataclass
class MethodCall:
    """What :func:`~camkit.cam.methods.compute_method_maps` hands a method runner.

    ``layer`` is the user's ``layer=`` argument (None = automatic; a list for the methods that take
    several layers themselves), not yet resolved; ``targets`` the
    ``classes=`` argument; ``batch_size`` the perturbed inputs per forward pass.
    """

    model: nn.Module
    x: torch.Tensor
    layer: str | Sequence[str] | None
    targets: Targets
    categories: list[str] | None
    batch_size: int
    # Seed of the methods that draw random numbers (noise of Smooth Grad-CAM++ / SS-CAM): same seed, same maps.
    seed: int = 0


@dataclass
class MethodBatch(CAMBatch):
    """A :class:`~camkit.cam.engine.CAMBatch` plus the method and the target layer that made it.

    Fields as in CAMBatch: logits ``[B, C]``, probs ``[B, C]``, class_idx ``[B, k]`` (-1 for a callable
    target), scores ``[B, k]`` (softmax probabilities of the classes; the callable's own values for a
    callable target), maps ``[B, k, h, w]`` raw at the target layer's resolution (float32, before any
    ReLU/normalisation; units: CAM = logit units, gradient methods = CAM units, see
    :mod:`camkit.cam.methods.gradient`; Score-CAM and Eigen-CAM are unitless), bias ``[B, k]`` — the
    classifier bias for ``cam``, zeros for every other method.
    """

    method: str = "cam"
    layer: str = "features"


@dataclass
class MethodOutput:
    """A runner's result: class_idx ``[B, k]`` (-1 for a callable target), scores ``[B, k]`` (the explained
    values, detached), logits ``[B, C]`` (detached), maps ``[B, k, h, w]`` raw, and the layer's display name."""

    class_idx: torch.Tensor
    scores: torch.Tensor
    logits: torch.Tensor
    maps: torch.Tensor
    layer: str


Runner = Callable[[MethodCall], MethodOutput]


def forward_at_layer(call: MethodCall, need_grad: bool) -> tuple[str | None, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(full_layer, A, logits, class_idx, scores)`` for a runner: the target layer resolved, one forward.

    With ``need_grad`` A is a leaf and ``scores`` (``[B, k]``) are differentiable in it; otherwise call it
    under ``torch.inference_mode()``.
    """
    full = resolve_layer(call.model, call.x, call.layer)
    a, logits = activations_and_logits(call.model, call.x, full, need_grad)
    with torch.enable_grad() if need_grad else torch.no_grad():
        idx, s = target_scores(logits, call.targets, call.categories)
    return full, a, logits, idx, s


def class_agnostic(maps: torch.Tensor, k: int) -> torch.Tensor:
    """One map per image ``[B, h, w]`` -> the same map for each of the k targets ``[B, k, h, w]``."""
    return maps.unsqueeze(1).expand(-1, k, -1, -1).contiguous()
