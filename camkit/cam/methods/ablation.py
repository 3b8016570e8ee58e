"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): channel weights from the score drop when a channel is removed.

For target layer activations ``A [B, K, h, w]`` and the explained score ``y^c`` (a class logit):

    y^c_k = the score with channel k of A set to zero (the rest of the network re-run on the ablated map)
    w_k^c = (y^c - y^c_k) / y^c                     Eq. 2 (the relative drop; y^c = 0: the plain drop y^c - y^c_k)
    L^c   = ReLU(sum_k w_k^c A_k)                     (returned without the ReLU, at the layer's resolution)

Work that cannot change the result is skipped, and the rest is batched:

- A channel that is zero everywhere is unchanged by its ablation, so ``y^c_k = y^c`` and ``w_k = 0``
  without a forward pass (after a ReLU, many channels of a late layer are).
- Only the part of the network after the target layer is re-run: for a CAMModel's own feature map
  that is ``model.head`` on ``batch_size`` ablated maps at once. For any other module, a forward hook
  replaces the target layer's output by the batch of ablated maps, and the part before the layer runs
  on as little as possible, in this order of preference:
  1. a 32x32 corner of the image (when nothing after the layer reads an earlier tensor, its value is
     irrelevant: the whole upstream cost is that of a thumbnail);
  2. the single image (it broadcasts: every row of a batch comes from the same image, so a residual
     branch from before the layer is the same for all of them);
  3. a batch of copies of the image (the whole network per row: always correct, the slowest).
  The first batch carries one un-ablated row, and a mode is used only if that row reproduces the
  model's own logits (and the forward does not fail); otherwise the next mode is tried.
- One ablated forward gives the scores of every class, so k classes cost the same as one.

pytorch-grad-cam's ``AblationCAM`` departs from the paper when the layer's minimum (over the image's
repeated activations) is not 0: it then replaces the channel by ``min - 1e7`` instead of zero. The
two agree on layers that end in a ReLU (minimum 0), which is where the paper applies it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...errors import ModelError
from ...models.cam_model import CAMModel
from .base import MethodCall, MethodOutput, display_layer, forward_at_layer, target_scores

# scores(logits [n, C], image index) -> [n, k] scores of the explained targets
Selector = Callable[[torch.Tensor, int], torch.Tensor]


class _Replace:
    """A forward hook that swaps the output of the ``call``-th call (0-based) of a module for ``value``."""

    def __init__(self, call: int, value: torch.Tensor) -> None:
        self.call, self.count, self.value = call, 0, value

    def __call__(self, _m, _i, out):
        i = self.count
        self.count += 1
        # a copy: an in-place op downstream (a residual ``out += identity``) must not change the maps
        return self.value.clone() if i == self.call else None


def _calls_of(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int:
    """How many times the forward of ``x`` calls ``module`` (a shared module may run more than once)."""
    n = [0]

    def hook(*_):
        n[0] += 1

    h = module.register_forward_hook(hook)
    try:
        model(x)
    finally:
        h.remove()
    return n[0]


MODES = ("thumbnail", "single", "copies")


def _downstream(call: MethodCall, full: str | None) -> Callable[[torch.Tensor, int, str], torch.Tensor]:
    """``run(maps [n, K, h, w], image b, mode)`` -> logits ``[n, C]`` with the target layer's output replaced
    (``mode``: what the part before the layer runs on, see the module docstring)."""
    model, x = call.model, call.x
    if full is None:  # the model's own feature map: a CAMModel, whose head takes it
        assert isinstance(model, CAMModel)
        return lambda maps, b, mode: model.head(maps)
    module = model.get_submodule(full)
    last = _calls_of(model, module, x[:1]) - 1

    def run(maps: torch.Tensor, b: int, mode: str) -> torch.Tensor:
        hook = _Replace(last, maps)
        h = module.register_forward_hook(hook)
        try:
            if mode == "thumbnail":
                inp = x[b : b + 1, :, :32, :32]
            elif mode == "single":
                inp = x[b : b + 1]
            else:
                inp = x[b : b + 1].expand(maps.shape[0], *x.shape[1:])
            return model(inp)
        finally:
            h.remove()

    return run


def ablation_scores(
    a: torch.Tensor,
    logits: torch.Tensor,
    select: Selector,
    run: Callable[[torch.Tensor, int, str], torch.Tensor],
    batch_size: int = 32,
) -> torch.Tensor:
    """Scores ``[B, K, k]`` with each channel ablated (zeroed); all-zero channels keep the un-ablated score.

    ``run(maps, b, mode)``: logits of the network continued from ``maps`` (rows of image b).
    """
    b_, kch = a.shape[:2]
    batch_size = max(1, int(batch_size))
    out = []
    mode: str | None = None
    for b in range(b_):
        base = select(logits[b : b + 1], b)  # [1, k]
        scores = base.expand(kch, -1).clone().float()
        live = torch.nonzero(a[b].flatten(1).ne(0).any(dim=1)).reshape(-1)
        for start in range(0, len(live), batch_size):
            chans = live[start : start + batch_size]
            maps = a[b].expand(len(chans), -1, -1, -1).clone()
            maps[torch.arange(len(chans)), chans] = 0
            if mode is None:
                mode, got = _first_mode(run, torch.cat([a[b : b + 1], maps]), b, logits[b])
            else:
                got = run(maps, b, mode)
            scores[chans] = select(got, b).float()
        out.append(scores)
    return torch.stack(out)


def _first_mode(run, maps: torch.Tensor, b: int, ref: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The cheapest mode whose un-ablated first row reproduces ``ref``; returns it and the other rows' logits."""
    for mode in MODES:
        try:
            got = run(maps, b, mode)
        except RuntimeError:  # e.g. a shape mismatch when the upstream part runs on a thumbnail
            continue
        if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] == maps.shape[0] and _same(got[0], ref):
            return mode, got[1:]
    raise ModelError(
        "Ablation-CAM could not reproduce the model's logits by replacing the target layer's output; "
        "the layer's output must be the only path from the input to the logits (use another layer)"
    )


def _same(got: torch.Tensor, ref: torch.Tensor) -> bool:
    scale = float(ref.abs().max()) + 1.0
    return bool((got.float() - ref.float()).abs().max() <= 1e-4 * scale)


def ablation_weights(base: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """``(y - y_k) / y`` (Eq. 2): base scores ``[B, k]``, ablated ``[B, K, k]`` -> ``[B, K, k]``; y = 0 -> ``y - y_k``."""
    y = base.float()[:, None, :]
    drop = y - ablated
    return torch.where(y != 0, drop / torch.where(y != 0, y, torch.ones_like(y)), drop)


def run(call: MethodCall) -> MethodOutput:
    with torch.inference_mode():
        full, a, logits, idx, s = forward_at_layer(call, need_grad=False)
        custom = callable(call.targets) and not isinstance(call.targets, torch.Tensor)

        def select(lg: torch.Tensor, b: int) -> torch.Tensor:
            if custom:
                return target_scores(lg, call.targets, call.categories)[1]
            return lg.gather(1, idx[b : b + 1].expand(lg.shape[0], -1))

        ablated = ablation_scores(a, logits, select, _downstream(call, full), call.batch_size)
        w = ablation_weights(s, ablated)
        maps = torch.einsum("bkj,bkhw->bjhw", w, a.float())
    return MethodOutput(idx, s, logits, maps, display_layer(call.model, full))
