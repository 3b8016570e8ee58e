"""Weights: named torchvision weights (downloaded to torch's cache), and local checkpoints.

Local checkpoints are loaded with ``torch.load(..., weights_only=True)``: a pickle that carries code
is refused, never run. Accepted contents:

- a plain ``state_dict`` of the original network (torchvision/timm key names, e.g. ``fc.weight``),
- a ``state_dict`` of a :class:`CAMModel` (keys ``net.*``), with or without a ``module.`` prefix,
- a camkit checkpoint (written by ``camkit finetune``): a dict with ``"camkit_checkpoint"``,
  ``"model"`` (registry name), ``"num_classes"``, ``"state_dict"`` and optionally
  ``"class_names"``, ``"preprocess"`` and ``"pool"``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from ..preprocess import Preprocess

RANDOM_WEIGHTS = ("random", "none")


def is_random_weights(weights: str | None) -> bool:
    """``--weights random`` (or ``none``): random initialisation, nothing downloaded."""
    return weights is not None and weights.lower() in RANDOM_WEIGHTS


def load_torchvision_pretrained(net, builder: str, weights: str | None, drop_prefixes: tuple[str, ...] = ()):
    """Load torchvision's named/default ``weights`` for ``builder`` into ``net`` (strict).

    Returns ``(enum, preprocess, categories)``; for random weights ``(None, Preprocess(), None)`` and
    ``net`` is left as initialised. Keys starting with ``drop_prefixes`` (e.g. auxiliary heads) are skipped.
    """
    if is_random_weights(weights):
        return None, Preprocess(), None
    enum = torchvision_weights(builder, weights)
    sd = download_state_dict(enum, builder)
    if drop_prefixes:
        sd = {k: v for k, v in sd.items() if not k.startswith(drop_prefixes)}
    net.load_state_dict(sd, strict=True)
    return enum, preprocess_of(enum), list(enum.meta["categories"])


def looks_like_path(weights: str) -> bool:
    """A ``--weights`` value naming a file rather than a weights enum (``IMAGENET1K_V2``)."""
    return any(ch in weights for ch in "/\\.") or Path(weights).exists()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; returns a dict (a bare state dict is wrapped as ``{"state_dict": sd}``)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"no such checkpoint file: {p} (check the path given to --weights)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Unsupported global" in text or "GLOBAL" in text:
            raise WeightsError(
                f"{p} contains pickled Python code or objects beyond tensors, which camkit refuses to load "
                "(weights_only=True); save a plain state_dict with torch.save(model.state_dict(), path)"
            ) from None
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Unsupported")), "unreadable pickle")
        raise WeightsError(f"{p} is not a PyTorch checkpoint ({detail}); pass a .pt/.pth saved with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{p} is not a readable PyTorch checkpoint ({msg}); pass a .pt/.pth saved with torch.save") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{p} holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    if "camkit_checkpoint" in obj or "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{p} is a dict but not a state dict (values are not all tensors); save model.state_dict()")
    return {"state_dict": obj}


def _normalise_keys(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module.") :]
        if k not in model_keys and ("net." + k) in model_keys:
            k = "net." + k
        out[k] = v
    return out


def apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Load ``sd`` strictly into ``model``; a mismatch is a one-line :class:`WeightsError`."""
    own = model.state_dict()
    sd = _normalise_keys(sd, set(own))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise WeightsError(
            f"checkpoint {source} does not fit model {model_name}: {'; '.join(parts)}; "
            "pass the --model the checkpoint was trained with"
        )
    model.load_state_dict(sd, strict=True)


def torchvision_weights(builder: str, name: str | None):
    """The torchvision weights enum member for ``builder`` (``name`` None or "DEFAULT": the best one)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(builder)
    key = "DEFAULT" if name in (None, "DEFAULT", "default") else name
    try:
        return enum[key] if key != "DEFAULT" else enum.DEFAULT
    except KeyError:
        options = ", ".join(m.name for m in enum)
        raise WeightsError(f"{builder} has no weights named {name!r}; use one of {options}, or --weights PATH") from None


def download_state_dict(weights_enum, model_name: str) -> dict[str, torch.Tensor]:
    """Weights from torch's cache, downloading them when online; offline, a clear error."""
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # urllib/socket/ssl/hash errors differ by platform; all mean "not available"
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        file = str(weights_enum.url).rsplit("/", 1)[-1]
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"cannot get {model_name} weights {weights_enum} ({reason}): not in the cache {hub / file} and no "
            "download possible; go online once, copy the file there, or pass --weights PATH to a local checkpoint"
        ) from None


def preprocess_of(weights_enum) -> Preprocess:
    """The eval transform that belongs to torchvision weights (resize, crop, interpolation, mean/std)."""
    t = weights_enum.transforms()
    return Preprocess(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        interpolation=str(t.interpolation.value),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
    )
