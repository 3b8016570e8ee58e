"""The model registry: names -> builders of :class:`CAMModel`, with weights and preprocessing.

``load_model(name, weights=...)``:

- ``weights=None``: the model's default weights — the embedded ImageNet weights for
  ``efficientnet_lite0`` (no network needed), torchvision's best ImageNet weights otherwise
  (from torch's cache, downloaded when online; offline, a one-line error naming ``--weights PATH``).
  For the GAP-surgery models the default loads the ImageNet backbone; the new head stays untrained.
- ``weights="random"``: random initialisation (for tests and fine-tuning from scratch).
- ``weights="IMAGENET1K_V2"``: a named torchvision weights entry.
- ``weights="path/to/file.pt"``: a local checkpoint (``torch.load(weights_only=True)``); a camkit
  checkpoint also sets the model name, class count, class names and preprocessing.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ModelError, WeightsError
from ..preprocess import Preprocess
from .cam_model import CamKind, CAMModel

DEFAULT_MODEL = "efficientnet_lite0"
LITE0_PREPROCESS = Preprocess(resize=256, crop=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    ``build(weights, num_classes, pool)`` returns a CAMModel in eval mode; ``weights`` is None
    (default), "random" or a named entry — checkpoint files are handled by :func:`load_model`.
    """

    name: str
    source: str  # "camkit", "torchvision" or "timm"
    cam_kind: CamKind
    description: str
    build: Callable[..., CAMModel] = field(repr=False)
    default_weights: str = "DEFAULT"

    @property
    def cam_kind_text(self) -> str:
        return {"exact": "exact CAM", "needs-finetune": "needs fine-tuning (new GAP head is untrained)",
                "gradient": "gradient CAMs only (head is not pool+linear)"}[self.cam_kind]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(cam_kind: CamKind | None = None) -> list[ModelSpec]:
    """All registered models (optionally of one CAM kind), in registration order."""
    _ensure_builtin()
    return [s for s in _REGISTRY.values() if cam_kind is None or s.cam_kind == cam_kind]


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; ``timm/<name>`` resolves any timm model of pool+linear shape."""
    _ensure_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm/"):
        from .timm_adapter import timm_spec

        return timm_spec(name[len("timm/") :])
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ModelError(f"unknown model {name!r}; {hint}run `camkit models` for the list, or use timm/<name> for a timm model")


def load_model(
    name: str | None = None,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    pool: str | None = None,
) -> CAMModel:
    """Build a registered model with its weights and preprocessing, in eval mode on the CPU.

    ``name`` may be None when ``weights`` is a camkit checkpoint (it records its model), otherwise
    defaults to the embedded ``efficientnet_lite0``.
    """
    from .weights import RANDOM_WEIGHTS, apply_state_dict, load_checkpoint, looks_like_path

    ckpt = None
    if weights is not None and (isinstance(weights, Path) or (str(weights).lower() not in RANDOM_WEIGHTS and looks_like_path(str(weights)))):
        ckpt = load_checkpoint(weights)
        if name is None:
            name = ckpt.get("model")
        if name is None:
            raise WeightsError(f"{weights} is a plain state dict: say which model it belongs to with --model NAME")
        if ckpt.get("model") not in (None, name):
            raise WeightsError(f"checkpoint {weights} was trained for model {ckpt['model']!r}, not {name!r}; drop --model or pass --model {ckpt['model']}")
        num_classes = num_classes or ckpt.get("num_classes")
        pool = pool or ckpt.get("pool")
    name = name or DEFAULT_MODEL
    spec = get_spec(name)
    if ckpt is not None:
        model = spec.build(weights="random", num_classes=num_classes, pool=pool)
        sd = ckpt["state_dict"]
        if num_classes is None:
            # A plain state dict: adapt the class count to the checkpoint's linear layer.
            fc_key = f"net.{model.classifier_path}.weight"
            for k in (fc_key, fc_key[len("net.") :]):
                if k in sd and sd[k].shape[0] != model.num_classes:
                    model = spec.build(weights="random", num_classes=int(sd[k].shape[0]), pool=pool)
        apply_state_dict(model, sd, str(weights), name)
        model.weights_name = str(weights)
        if ckpt.get("class_names"):
            model.categories = list(ckpt["class_names"])
        elif model.num_classes != 1000:
            model.categories = None
        if ckpt.get("preprocess"):
            model.preprocess = Preprocess.from_dict(ckpt["preprocess"])
        if ckpt.get("camkit_checkpoint") and model.cam_kind == "needs-finetune":
            model.cam_kind = "exact" if model.pool == "avg" else model.cam_kind
    else:
        w = None if weights is None else str(weights)
        model = spec.build(weights=w, num_classes=num_classes, pool=pool)
    return model.eval()


_BUILTIN_DONE = False


def _ensure_builtin() -> None:
    global _BUILTIN_DONE
    if not _BUILTIN_DONE:
        _BUILTIN_DONE = True
        from . import builtin  # noqa: F401  (registers the built-in models)

        for optional in ("builtin_gradient", "builtin_cifar"):
            try:  # families added by later work register themselves here
                importlib.import_module(f"{__package__}.{optional}")
            except ModuleNotFoundError as e:
                if e.name != f"{__package__}.{optional}":
                    raise
