"""Weights: named torchvision weights (from torch's cache, downloaded when online) and local checkpoints.

Local checkpoints are loaded with ``torch.load(..., weights_only=True)``: a pickle that carries code
is refused, never run. Accepted contents:

- a plain ``state_dict`` of the original network (torchvision/timm key names, e.g. ``fc.weight``),
- a ``state_dict`` of a :class:`CAMModel` (keys ``net.*``), with or without a ``module.`` prefix,
- a camkit checkpoint (written by ``camkit finetune``): a dict with ``"camkit_checkpoint"``,
  ``"model"`` (registry name), ``"num_classes"``, ``"state_dict"`` and optionally
  ``"class_names"``, ``"preprocess"`` and ``"pool"``.

Downloads never write to stdout (torch.hub prints its ``Downloading: ...`` line there; it is sent to
stderr so a ``--json`` document stays the only output), and fail within seconds when the host cannot
be reached instead of waiting for the resolver's long timeout.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..errors import WeightsError
from ..preprocess import Preprocess, interpolation_of, rgb_triple
from .weights_arg import RANDOM_WEIGHTS, WeightsArg, WeightsChoice, looks_like_path, parse_weights

__all__ = [
    "RANDOM_WEIGHTS", "WeightsChoice", "parse_weights", "looks_like_path", "is_random_weights",
    "load_torchvision_pretrained", "torchvision_weights", "download_state_dict", "check_download_host",
    "hub_output_to_stderr", "load_checkpoint", "apply_state_dict", "non_finite_entries", "preprocess_of",
]

CONNECT_TIMEOUT_S = 3.0
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def is_random_weights(weights: WeightsArg) -> bool:
    """``weights`` asks for random initialisation (``"random"``/``"none"``, any case)."""
    return weights is not None and parse_weights(weights).is_random


def load_torchvision_pretrained(net, builder: str, weights: WeightsArg, drop_prefixes: tuple[str, ...] = ()):
    """Load torchvision's named/default ``weights`` for ``builder`` into ``net`` (strict).

    Returns ``(enum, preprocess, categories)``; for random weights ``(None, Preprocess(), None)`` and
    ``net`` is left as initialised. Keys starting with ``drop_prefixes`` (e.g. auxiliary heads) are skipped.
    """
    choice = parse_weights(weights)
    if choice.is_random:
        return None, Preprocess(), None
    enum = torchvision_weights(builder, choice)
    sd = download_state_dict(enum, builder)
    if drop_prefixes:
        sd = {k: v for k, v in sd.items() if not k.startswith(drop_prefixes)}
    net.load_state_dict(sd, strict=True)
    return enum, preprocess_of(enum), list(enum.meta["categories"])


def torchvision_weights(builder: str, weights: WeightsArg):
    """The torchvision weights enum member for ``builder`` (default: torchvision's best entry)."""
    from torchvision.models import get_model_weights

    choice = parse_weights(weights)
    enum = get_model_weights(builder)
    if choice.kind == "default":
        return enum.DEFAULT
    try:
        return enum[str(choice.name)]
    except KeyError:
        options = ", ".join(m.name for m in enum)
        raise WeightsError(f"{builder} has no weights named {choice.name!r}; use one of {options}, or weights=PATH to a checkpoint") from None


def _resolve_within(host: str, port: int, timeout: float) -> None:
    """``getaddrinfo`` bounded by ``timeout`` (it has no timeout of its own; offline it can block ~30 s)."""
    result: dict[str, Any] = {}

    def resolve() -> None:
        try:
            result["addr"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=resolve, name="camkit-resolve", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise OSError(f"cannot resolve {host} within {timeout:g}s (offline?)")
    if "error" in result:
        raise OSError(f"cannot resolve {host}: {result['error']}")


def check_download_host(url: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise OSError unless ``url``'s host resolves and accepts a TCP connection within ``timeout`` s each."""
    parts = urlparse(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    _resolve_within(host, port, timeout)
    with socket.create_connection((host, port), timeout=timeout):
        pass


def hub_output_to_stderr() -> contextlib.AbstractContextManager:
    """Send what download code prints to stdout (torch.hub's ``Downloading: ...``) to stderr instead."""
    return contextlib.redirect_stdout(sys.stderr)


def download_state_dict(weights_enum, model_name: str) -> dict[str, torch.Tensor]:
    """Weights from torch's cache, downloading them when online; offline, a one-line error within seconds."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    file = hub / str(weights_enum.url).rsplit("/", 1)[-1]
    try:
        if not file.is_file():
            check_download_host(str(weights_enum.url))
        # torch.hub announces downloads on stdout; stdout belongs to the caller's document.
        with hub_output_to_stderr():
            return weights_enum.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # urllib/socket/ssl/hash errors differ by platform; all mean "not available"
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"cannot get {model_name} weights {weights_enum} ({reason}): not in the cache {file} and no "
            "download possible; go online once, copy the file there, or pass weights=PATH to a local checkpoint"
        ) from None


def _folder_hint(folder: Path) -> str:
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    # camkit finetune writes best.pt (best validation accuracy) and last.pt (for resuming).
    found.sort(key=lambda p: (p.name != "best.pt", p.name != "last.pt", p.name))
    if not found:
        return "it holds no .pt/.pth file; pass weights=PATH to a checkpoint file"
    listed = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
    return f"pass a checkpoint file inside it, e.g. weights={found[0]} (it holds {listed})"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; returns a dict (a bare state dict is wrapped as ``{"state_dict": sd}``)."""
    p = Path(path)
    if p.is_dir():
        raise WeightsError(f"{p} is a folder, not a checkpoint file; {_folder_hint(p)}")
    if not p.is_file():
        raise WeightsError(f"no such checkpoint file: {p} (check weights=PATH)")
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


def non_finite_entries(sd: dict[str, torch.Tensor]) -> list[tuple[str, int, int]]:
    """``(key, NaN count, inf count)`` of every floating-point tensor in ``sd`` that is not all finite."""
    bad = []
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad.append((k, int(torch.isnan(v).sum()), int(torch.isinf(v).sum())))
    return bad


def _describe_non_finite(bad: list[tuple[str, int, int]]) -> str:
    def one(k: str, nan: int, inf: int) -> str:
        counts = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n]
        return f"{k} ({', '.join(counts)})"

    shown = ", ".join(one(*b) for b in bad[:3]) + (f", and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"{len(bad)} {'tensor' if len(bad) == 1 else 'tensors'} hold NaN/inf values: {shown}"


def apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Load ``sd`` strictly into ``model``; a mismatch or a NaN/inf value is a one-line :class:`WeightsError`."""
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
            "pass the model name the checkpoint was trained with"
        )
    bad = non_finite_entries(sd)
    if bad:
        raise WeightsError(
            f"checkpoint {source} is unusable: {_describe_non_finite(bad)} (the training diverged or the file "
            "was damaged); pass an earlier checkpoint"
        )
    model.load_state_dict(sd, strict=True)


def preprocess_of(weights_enum) -> Preprocess:
    """The eval transform that belongs to torchvision weights (resize, crop, interpolation, mean/std)."""
    t = weights_enum.transforms()
    return Preprocess(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        interpolation=interpolation_of(str(t.interpolation.value)),
        mean=rgb_triple(t.mean),
        std=rgb_triple(t.std),
    )
