"""The model registry: names -> :class:`ModelSpec` (how to build a model, what CAM it gives), and
:func:`load_model`, which builds a registered model with its weights.

A leaf module: it imports none of the modules that register into it (only the weights helpers). Each model family
(:mod:`~camkit.models.lite0`, :mod:`~camkit.models.torchvision_exact`, ...) calls :func:`register`
at import time, and :mod:`camkit.models` imports every family, so ``import camkit.models`` fills the
registry. A family that answers for a whole namespace of names (``timm/<name>``) registers a
resolver with :func:`register_prefix` instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, ParameterError, WeightsError
from ..preprocess import Preprocess
from .kinds import CAM_KIND_TEXT, CamKind, PoolKind, pool_kind
from .weights import apply_state_dict, load_checkpoint
from .weights_arg import WeightsArg, WeightsChoice, parse_weights

if TYPE_CHECKING:
    from torch import nn

DEFAULT_MODEL = "efficientnet_lite0"

Builder = Callable[[WeightsChoice, "int | None", "PoolKind | None"], "nn.Module"]
"""``builder(weights, num_classes, pool)``: a model in eval mode on the CPU. ``weights`` is a parsed
:class:`WeightsChoice` of kind default, random or named (files are loaded by ``load_model``);
``num_classes`` None keeps the weights' class count; ``pool`` None keeps the family's pooling."""


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    ``source`` is where the architecture comes from ("camkit", "torchvision" or "timm");
    ``default_weights`` what ``weights=None`` loads ("DEFAULT": the best published entry,
    "embedded": shipped with camkit, "random": none exist); ``classes()`` the class names of the
    default weights without building the model (returns None when they carry none; ``classes=None``:
    only building tells); ``family`` the module that registered it.
    """

    name: str
    source: str
    cam_kind: CamKind
    description: str
    builder: Builder = field(repr=False)
    default_weights: str = "DEFAULT"
    classes: Callable[[], list[str] | None] | None = field(default=None, repr=False)
    family: str = ""

    def __post_init__(self) -> None:
        if not self.family:
            func = getattr(self.builder, "func", self.builder)  # functools.partial -> its function
            object.__setattr__(self, "family", getattr(func, "__module__", "") or "")

    @property
    def cam_kind_text(self) -> str:
        return CAM_KIND_TEXT[self.cam_kind]

    def build(self, weights: WeightsArg = None, num_classes: int | None = None, pool: str | None = None) -> Any:
        """The model with ``weights`` (default, random or a named entry), in eval mode on the CPU."""
        choice = parse_weights(weights)
        if choice.is_file:
            raise WeightsError(f"{self.name}: checkpoint files are loaded by load_model({self.name!r}, weights={str(choice)!r})")
        kind = pool_kind(pool) if pool is not None else None
        if num_classes is not None and int(num_classes) < 1:
            raise ParameterError("num_classes", num_classes, "must be at least 1")
        return self.builder(choice, num_classes, kind)


_REGISTRY: dict[str, ModelSpec] = {}
_PREFIXES: dict[str, Callable[[str], ModelSpec]] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` under ``spec.name``; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_prefix(prefix: str, resolve: Callable[[str], ModelSpec]) -> None:
    """Let ``resolve(rest)`` answer every name ``prefix + rest`` (e.g. ``"timm/"``) not registered by name."""
    if prefix in _PREFIXES:
        raise ValueError(f"model name prefix {prefix!r} is already registered")
    _PREFIXES[prefix] = resolve


def list_models(cam_kind: CamKind | None = None) -> list[ModelSpec]:
    """All registered models (optionally of one CAM kind), in registration order."""
    return [s for s in _REGISTRY.values() if cam_kind is None or s.cam_kind == cam_kind]


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (or the one a prefix resolver makes for it)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, resolve in _PREFIXES.items():
        if name.startswith(prefix):
            return resolve(name[len(prefix) :])
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    prefixes = "".join(f", or {p}<name>" for p in _PREFIXES)
    raise ModelError(f"unknown model {name!r}; {hint}see list_models() for the registered names{prefixes}")


def load_model(
    name: str | None = None,
    weights: WeightsArg = None,
    *,
    num_classes: int | None = None,
    pool: str | None = None,
) -> Any:
    """Build a registered model with its weights and preprocessing, in eval mode on the CPU.

    ``load_model(name, weights=...)``:

    - ``weights=None``: the model's default weights: the embedded ImageNet weights for
      ``efficientnet_lite0`` (no network needed), torchvision's best ImageNet weights otherwise
      (from torch's cache, downloaded when online; offline, a one-line error naming ``weights=PATH``).
      For the GAP-surgery models the default loads the ImageNet backbone; the new head stays untrained.
    - ``weights="random"``: random initialisation (for tests and fine-tuning from scratch).
    - ``weights="IMAGENET1K_V2"``: a named weights entry.
    - ``weights="path/to/file.pt"`` (or a :class:`~pathlib.Path`): a local checkpoint
      (``torch.load(weights_only=True)``); a camkit checkpoint also sets the model name, class count,
      class names and preprocessing.

    ``name`` may be None when ``weights`` is a camkit checkpoint (it records its model), otherwise
    defaults to the embedded ``efficientnet_lite0``. Returns a :class:`~camkit.models.CAMModel`
    (or a :class:`~camkit.models.classifier_model.ClassifierModel` for gradient-only models).
    A convolutional network comes with channels-last weights (:mod:`camkit.models.memory_format`:
    1.3-2.3x faster on CPU, the same results up to float rounding; ``CAMKIT_CHANNELS_LAST=0`` opts out).
    """
    from .memory_format import prefer_channels_last

    choice = parse_weights(weights)
    if choice.is_file:
        return prefer_channels_last(_load_checkpoint_model(name, choice, num_classes, pool))
    return prefer_channels_last(get_spec(name or DEFAULT_MODEL).build(choice, num_classes, pool).eval())


def _load_checkpoint_model(name: str | None, choice: WeightsChoice, num_classes: int | None, pool: str | None) -> Any:
    assert choice.path is not None  # a "file" choice always holds its path
    ckpt = load_checkpoint(choice.path)
    recorded = ckpt.get("model")
    if name is None:
        name = recorded
    if name is None:
        raise WeightsError(f"{choice} is a plain state dict: say which model it belongs to with name=NAME")
    if recorded not in (None, name):
        raise WeightsError(f"checkpoint {choice} was trained for model {recorded!r}, not {name!r}; leave name=None or pass name={recorded!r}")
    num_classes = num_classes or ckpt.get("num_classes")
    pool = pool or ckpt.get("pool")
    spec: ModelSpec = get_spec(name)
    random = WeightsChoice("random")
    model = spec.build(random, num_classes, pool)
    sd = ckpt["state_dict"]
    if num_classes is None:
        # A plain state dict: adapt the class count to the checkpoint's linear layer.
        fc_key = f"net.{model.classifier_path}.weight" if hasattr(model, "classifier_path") else None
        for k in (fc_key, fc_key[len("net.") :]) if fc_key else ():
            if k in sd and sd[k].shape[0] != model.num_classes:
                model = spec.build(random, int(sd[k].shape[0]), pool)
    apply_state_dict(model, sd, str(choice), name)
    model.weights_name = str(choice)
    if ckpt.get("class_names"):
        model.categories = list(ckpt["class_names"])
    elif model.num_classes != 1000:
        model.categories = None
    if ckpt.get("preprocess"):
        model.preprocess = Preprocess.from_dict(ckpt["preprocess"])
    if ckpt.get("camkit_checkpoint") and model.cam_kind == "needs-finetune" and model.pool == "avg":
        model.cam_kind = "exact"
    return model.eval()
