"""Deep Feature Factorization (Collins et al., ECCV 2018, arXiv 1806.10206): concepts by non-negative matrix factorisation.

The activations of an image ``A [K, h, w]`` are a non-negative matrix ``V [K, h*w]`` (channels x
positions). NMF factorises it into ``r`` concepts:

    V ~ W H,   W [K, r] >= 0 (each concept's channel signature),   H [r, h*w] >= 0 (where it is)
    minimise ||V - W H||_F by Lee & Seung's multiplicative updates (W first, then H, every iteration)

A layer before its ReLU may be negative: each channel's minimum is subtracted first and added back to
the concept vectors (``W_j + offset``), as pytorch-grad-cam does.

Which concept explains class c: the head of a :class:`~camkit.models.CAMModel` is applied to each
concept vector (its pool is the identity on a vector): the concept with the highest logit for c gives
the map ``H_j`` (the paper's use: concepts labelled by the classifier). Each image is factorised on its
own (the paper also factorises a set of images jointly: :func:`dff` takes the batch and ``joint=True``).

Solver: pytorch-grad-cam calls scikit-learn's ``NMF(init='random', random_state=0)`` (coordinate
descent); camkit runs scikit-learn's multiplicative-update algorithm (``solver='mu'``, the paper's Lee &
Seung updates) in torch, from a seeded random start scaled like scikit-learn's (``sqrt(mean V / r) |N(0,1)|``),
with the same stopping rule (every 10 iterations, stop when the error fell by less than ``tol`` of the
initial error). NMF has many local optima, so the two solvers find different (equally valid) factors;
the test checks camkit's updates against scikit-learn's ``solver='mu'`` from the same start.
"""

from __future__ import annotations

import torch

from ...errors import ModelError
from ...models.cam_model import CAMModel
from .base import MethodCall, MethodOutput, display_layer, forward_at_layer

EPSILON = torch.finfo(torch.float32).eps  # scikit-learn's floor for a zero denominator


def nmf(
    v: torch.Tensor, w: torch.Tensor, h: torch.Tensor, max_iter: int = 200, tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multiplicative-update NMF ``V [m, n] ~ W [m, r] H [r, n]`` from ``(W, H)``; returns ``(W, H, iterations)`` (float64)."""
    v, w, h = v.double(), w.double().clone(), h.double().clone()
    err0 = prev = torch.linalg.norm(v - w @ h)
    it = 0
    for it in range(1, max_iter + 1):
        den = w @ (h @ h.T)
        w = w * (v @ h.T) / torch.where(den == 0, torch.full_like(den, EPSILON), den)
        den = (w.T @ w) @ h
        h = h * (w.T @ v) / torch.where(den == 0, torch.full_like(den, EPSILON), den)
        if tol > 0 and it % 10 == 0:
            err = torch.linalg.norm(v - w @ h)
            if (prev - err) / err0 < tol:
                break
            prev = err
    return w, h, it


def random_init(v: torch.Tensor, r: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [m, r], H [r, n])`` = ``sqrt(mean V / r) |N(0, 1)|`` from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    avg = float(v.double().mean().clamp_min(0) / r) ** 0.5
    h = avg * torch.randn((r, v.shape[1]), generator=gen, dtype=torch.float64).abs()
    w = avg * torch.randn((v.shape[0], r), generator=gen, dtype=torch.float64).abs()
    return w.to(v.device), h.to(v.device)


def dff(a: torch.Tensor, n_components: int = 5, seed: int = 0, joint: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Concepts ``[B, K, r]`` (``W + offset``) and heatmaps ``[B, r, h, w]`` of activations ``[B, K, h, w]``.

    ``joint``: one factorisation of the whole batch (shared concepts, every concept row the same).
    """
    b, k, hh, ww = a.shape
    groups = [torch.arange(b)] if joint else [torch.tensor([i]) for i in range(b)]
    concepts = torch.empty((b, k, n_components), dtype=torch.float64)
    heat = torch.empty((b, n_components, hh, ww), dtype=torch.float64)
    for g in groups:
        v = torch.nan_to_num(a[g].double()).permute(1, 0, 2, 3).reshape(k, -1)  # [K, |g| h w]
        offset = v.amin(dim=1, keepdim=True)
        v = v - offset
        w, h, _ = nmf(v, *random_init(v, n_components, seed))
        concepts[g] = (w + offset).cpu()
        heat[g] = h.reshape(n_components, len(g), hh, ww).permute(1, 0, 2, 3).cpu()
    return concepts.to(a.device), heat.to(a.device)


def run(call: MethodCall, n_components: int = 5) -> MethodOutput:
    model = call.model
    if not isinstance(model, CAMModel) or call.layer not in (None, "features"):
        raise ModelError("dff names its concepts with the classifier of a pool+linear head: use a CAM model and its own feature map")
    with torch.inference_mode():
        full, a, logits, idx, s = forward_at_layer(call, need_grad=False)
        concepts, heat = dff(a, n_components, call.seed)  # [B, K, r], [B, r, h, w]
        b, k, r = concepts.shape
        scores = model.head(concepts.transpose(1, 2).reshape(b * r, k, 1, 1).to(a.dtype)).reshape(b, r, -1)
        best = scores.gather(2, idx[:, None, :].expand(-1, r, -1)).argmax(dim=1)  # [B, k] concept per class
        maps = heat.gather(1, best[:, :, None, None].expand(-1, -1, *heat.shape[-2:])).float()
    return MethodOutput(idx, s, logits, maps, display_layer(model, full))
