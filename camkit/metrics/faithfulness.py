"""Faithfulness of saliency maps: deletion / insertion AUC and average drop / increase in confidence.

All four work on the model's *input tensor* (already normalised with the weights' mean/std), as RISE
and pytorch-grad-cam do: "zero" means the mean colour of the normalisation, not black.
The score is the softmax probability of the explained class. Maps of any resolution ``[B, h, w]`` are
first resized to the input ``H x W`` (bilinear, align_corners=False).

Deletion and insertion (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, arXiv 1806.07421; their ``evaluation.py``):

- Pixel order: by decreasing map value (``argsort(-map, stable)``: ties keep raster order; RISE's
  ``flip(argsort(map))`` breaks ties in reverse raster order — the only difference).
- Steps: ``pixels_per_step = ceil(H*W / steps)`` (``steps=224`` at 224x224 is RISE's 224 pixels per
  step), ``n = ceil(H*W / pixels_per_step)``; the curve has ``n + 1`` points, point i after ``i`` steps.
- Deletion starts from the image and sets the first ``i * pixels_per_step`` pixels (all channels) to the
  baseline, RISE's default ``"zero"``; insertion starts from the baseline, RISE's ``"blur"`` (each
  channel convolved with RISE's kernel: ``scipy.ndimage.gaussian_filter`` of a unit impulse at the
  centre of an 11x11 array with sigma 5; zero padding 5), and puts the image's pixels back in order.
- AUC: trapezoid rule on ``[0, 1]`` with equal spacing: ``(sum(p) - p[0]/2 - p[-1]/2) / n``.
  Lower deletion AUC and higher insertion AUC are better.

Average drop and increase in confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018, §5.1):
the explanation map ``E = X * N(M)`` with ``N`` = ReLU then min-max to [0, 1] (a constant map gives
zeros; pytorch-grad-cam's map convention); ``Y`` = probability of the class for ``X``, ``O`` for ``E``.
``average drop % = 100/N sum max(0, Y - O) / Y``; ``increase in confidence % = 100/N sum [O > Y]``.
Lower drop and higher increase are better.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from camkit.errors import ParameterError
from camkit.resample import resize_maps_bilinear

if TYPE_CHECKING:
    import torch

Baseline = Literal["zero", "blur"]


def auc(curves: np.ndarray) -> np.ndarray:
    """Normalised area under equally spaced curves ``[..., n+1]`` on ``[0, 1]`` (trapezoid rule).

    >>> float(auc(np.array([1.0, 0.5, 0.0])))
    0.5
    """
    c = np.asarray(curves, dtype=np.float64)
    return (c.sum(axis=-1) - c[..., 0] / 2 - c[..., -1] / 2) / (c.shape[-1] - 1)


def rise_blur_kernel(klen: int = 11, sigma: float = 5.0) -> np.ndarray:
    """RISE's blur kernel ``[klen, klen]``: scipy's gaussian_filter of a centred unit impulse (sums to 1)."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((klen, klen))
    impulse[klen // 2, klen // 2] = 1.0
    return gaussian_filter(impulse, sigma)


def baseline_image(x: torch.Tensor, kind: Baseline) -> torch.Tensor:
    """The substrate ``[B, C, H, W]``: zeros, or each channel blurred with :func:`rise_blur_kernel`."""
    import torch
    import torch.nn.functional as F

    if kind == "zero":
        return torch.zeros_like(x)
    if kind != "blur":
        raise ParameterError("baseline", kind, "must be 'zero' or 'blur'")
    k = torch.from_numpy(rise_blur_kernel()).to(x.dtype)
    c = x.shape[1]
    weight = k.expand(c, 1, *k.shape).contiguous()
    return F.conv2d(x, weight, padding=k.shape[-1] // 2, groups=c)


def _probs(model: Callable, x: torch.Tensor, cls: torch.Tensor, batch_size: int) -> torch.Tensor:
    import torch

    out = []
    for s in range(0, x.shape[0], batch_size):
        out.append(model(x[s : s + batch_size]).float().softmax(dim=1).gather(1, cls[s : s + batch_size, None])[:, 0])
    return torch.cat(out)


def deletion_insertion_curves(
    model: Callable,
    x: torch.Tensor,
    maps: torch.Tensor,
    class_idx: torch.Tensor,
    mode: Literal["deletion", "insertion"] = "deletion",
    *,
    steps: int = 224,
    baseline: Baseline | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Probability curves ``[B, n+1]`` (float64) of ``class_idx [B]`` as pixels are deleted/inserted.

    ``x [B, C, H, W]`` normalised input, ``maps [B, h, w]`` saliency (any resolution); ``baseline``
    defaults to ``"zero"`` for deletion and ``"blur"`` for insertion (RISE). ``model`` maps inputs to
    logits (run under inference mode, eval mode is the caller's business).
    """
    import torch

    if mode not in ("deletion", "insertion"):
        raise ParameterError("mode", mode, "must be 'deletion' or 'insertion'")
    b, _, h, w = x.shape
    hw = h * w
    pps = math.ceil(hw / max(1, int(steps)))
    n = math.ceil(hw / pps)
    base = baseline_image(x, baseline or ("zero" if mode == "deletion" else "blur"))
    start, finish = (x, base) if mode == "deletion" else (base, x)
    order = torch.argsort(-resize_maps_bilinear(maps, (h, w)).reshape(b, hw), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(b, hw).contiguous())
    cls = class_idx.reshape(-1).to(torch.int64)
    curves = np.empty((b, n + 1))
    with torch.inference_mode():
        for i in range(b):
            thresholds = torch.arange(n + 1) * pps  # pixels changed after each step
            for s in range(0, n + 1, batch_size):
                t = thresholds[s : s + batch_size]
                changed = (rank[i][None, :] < t[:, None]).reshape(-1, 1, h, w)
                imgs = torch.where(changed, finish[i : i + 1], start[i : i + 1])
                curves[i, s : s + len(t)] = _probs(model, imgs, cls[i].expand(len(t)), batch_size).double().numpy()
    return curves


def confidence_change(
    model: Callable, x: torch.Tensor, maps: torch.Tensor, class_idx: torch.Tensor, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """``(Y, O)`` per image: probabilities of ``class_idx`` for ``x`` and for ``x * N(map)`` (see module doc)."""
    import torch

    from ..normalize import normalize_maps

    h, w = x.shape[-2:]
    m = normalize_maps(resize_maps_bilinear(maps, (h, w)).clamp_min(0), "minmax")
    cls = class_idx.reshape(-1).to(torch.int64)
    with torch.inference_mode():
        y = _probs(model, x, cls, batch_size)
        o = _probs(model, x * m[:, None].to(x.dtype), cls, batch_size)
    return y.double().numpy(), o.double().numpy()


@dataclass
class FaithfulnessEvaluator:
    """Streaming faithfulness metrics: ``accumulate()`` per batch, ``compute()`` at the end.

    Args:
        model: inputs -> logits (a CAMModel, ClassifierModel or any module; put it in eval mode).
        steps, batch_size: see :func:`deletion_insertion_curves`.
        deletion_baseline, insertion_baseline: RISE's defaults ``"zero"`` and ``"blur"``.
        curves: also run deletion/insertion (``False``: only the cheap confidence metrics, 2 forwards
            per image instead of ``2 (n + 1) + 2``).
    """

    model: Callable
    steps: int = 224
    batch_size: int = 32
    deletion_baseline: Baseline = "zero"
    insertion_baseline: Baseline = "blur"
    curves: bool = True
    deletion_auc: list[float] = field(default_factory=list)
    insertion_auc: list[float] = field(default_factory=list)
    drop: list[float] = field(default_factory=list)
    increase: list[bool] = field(default_factory=list)

    def reset(self) -> None:
        """Forget every accumulated image."""
        for values in (self.deletion_auc, self.insertion_auc, self.drop, self.increase):
            values.clear()

    def accumulate(self, x: torch.Tensor, maps: torch.Tensor, class_idx: torch.Tensor) -> None:
        """One batch: input ``[B, C, H, W]``, maps ``[B, h, w]`` (or ``[B, k, h, w]``: the first), classes ``[B]``."""
        if maps.dim() == 4:
            maps = maps[:, 0]
        if class_idx.dim() == 2:
            class_idx = class_idx[:, 0]
        if self.curves:
            d = deletion_insertion_curves(self.model, x, maps, class_idx, "deletion", steps=self.steps,
                                          baseline=self.deletion_baseline, batch_size=self.batch_size)
            i = deletion_insertion_curves(self.model, x, maps, class_idx, "insertion", steps=self.steps,
                                          baseline=self.insertion_baseline, batch_size=self.batch_size)
            self.deletion_auc.extend(auc(d).tolist())
            self.insertion_auc.extend(auc(i).tolist())
        y, o = confidence_change(self.model, x, maps, class_idx, self.batch_size)
        self.drop.extend((np.maximum(0.0, y - o) / y).tolist())
        self.increase.extend((o > y).tolist())

    def compute(self) -> dict[str, float | int]:
        """Means over all images: ``deletion_auc``, ``insertion_auc`` (in [0, 1]; NaN without curves),
        ``average_drop`` and ``increase_in_confidence`` (percent), and ``n``."""
        n = len(self.drop)

        def mean(v: list) -> float:
            return float(np.mean(v)) if v else float("nan")

        return {
            "n": n,
            "deletion_auc": mean(self.deletion_auc),
            "insertion_auc": mean(self.insertion_auc),
            "average_drop": 100.0 * mean(self.drop),
            "increase_in_confidence": 100.0 * mean([float(v) for v in self.increase]),
        }
