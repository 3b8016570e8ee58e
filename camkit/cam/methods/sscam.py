"""SS-CAM (Wang, Naidu et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization", arXiv 2006.14255, 2020).

Score-CAM whose channel scores are averaged over ``N`` noisy copies of each mask (the paper's
SS-CAM(1), noise on the activation masks, as torch-cam implements it). For activations ``A [B, K, h, w]``
and input ``X [B, 3, H, W]``:

    H_k       = s(Up(A_k))                                  as in Score-CAM (min-max to [0, 1])
    S_k^c     = (1/N) sum_i f^c(X o (H_k + delta_ik))       delta_ik ~ N(0, sigma^2), one H x W field
    alpha_k^c = softmax_k(S_k^c)
    L^c       = ReLU(sum_k alpha_k^c A_k)                   (returned without the ReLU, at h x w)

The baseline term ``f^c(X_b)`` of the paper is the same for every channel and cancels in the softmax
(not run). Defaults ``N = 10``, ``sigma = 2`` are the paper's; torch-cam's are ``N = 35``, ``sigma = 2``.

Noise: ``delta_ik`` comes from a generator seeded from ``(seed, i, k)``, so it is the same field for
every image of a batch and a map does not depend on the batch size or on its neighbours. ``noise=``
overrides it: a callable ``(i, rows) -> [len(rows), 1, H, W]`` where ``rows`` index the flattened
``[B*K]`` (image, channel) pairs (the parity test feeds torch-cam's own draws this way).

Up and s: ``align_corners`` / ``normalize_first`` as in :mod:`camkit.cam.methods.scorecam` (default:
upsample then min-max, the Score-CAM paper's order; torch-cam normalises first). A constant channel
is *not* skipped here: its mask is zero but its noisy mask ``delta_ik`` is not. All ``N*B*K`` masked
inputs are forwarded ``batch_size`` at a time, in full batches across copies (:class:`MaskedBatches`).

Cost: the forwards of the masked inputs. Around them the work is done once per block of rows, not per
batch: the masks ``H_k`` once for all copies, one noisy copy of them per copy (one noise field per
channel, shared by the images), and one multiplication per batch written into a reused input buffer.
Few, large tensor operations matter on a busy CPU, where every parallel operation waits for its threads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .scorecam import feature_masks
from .smoothgradcampp import score_selector, seeded_normal

MaskNoiseFn = Callable[[int, torch.Tensor], torch.Tensor]

# Masks held at once (float32 elements of one [rows, 1, H, W] tensor): a block of rows whose masks are
# made once and reused by every copy (64 MB; one 224 x 224 mask is 50176 elements).
MASK_BLOCK_ELEMENTS = 1 << 24


class MaskedBatches:
    """Forwards masked copies ``x[image] * mask`` of the input in full batches and sums their scores per row.

    Rows index the flattened ``[B*K]`` (image, channel) pairs; ``sample[row]`` is the row's image. The
    masked inputs are written into one reused ``[batch_size, 3, H, W]`` buffer (x's dtype) and forwarded
    whenever it is full (and by :meth:`sums` for the rest), so that a batch can mix copies and rows.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, sample: torch.Tensor,
                 select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int, n_inputs: int) -> None:
        """``n_inputs``: how many masked inputs will be added in all (sizes the buffer when below a batch)."""
        self.forward, self.x, self.sample, self.select = forward, x, sample, select
        self.step = max(1, int(batch_size))
        self.buffer = x.new_empty((max(1, min(self.step, int(n_inputs))), *x.shape[1:]))
        self.rows: list[torch.Tensor] = []  # the rows of the buffer's filled part, in order
        self.fill = 0
        self.total: torch.Tensor | None = None  # [B*K, k] float64

    def add(self, rows: torch.Tensor, masks: torch.Tensor, scale: float | None = None) -> None:
        """Queue the inputs ``x[sample[rows]] * masks`` (times ``scale`` if given); masks ``[len(rows), 1, H, W]``."""
        pos, n = 0, len(rows)
        while pos < n:
            take = min(len(self.buffer) - self.fill, n - pos)
            seg = rows[pos : pos + take]
            out = self.buffer[self.fill : self.fill + take]
            images = self.x if self.x.shape[0] == 1 else self.x[self.sample[seg]]  # one image: broadcast, no copy
            torch.mul(images, masks[pos : pos + take], out=out)
            if scale is not None:
                out.mul_(scale)
            self.rows.append(seg)
            self.fill += take
            pos += take
            if self.fill == len(self.buffer):
                self._flush()

    def _flush(self) -> None:
        if not self.fill:
            return
        rows = torch.cat(self.rows) if len(self.rows) > 1 else self.rows[0]
        self.add_scores(rows, self.select(self.forward(self.buffer[: self.fill]), self.sample[rows]))
        self.rows, self.fill = [], 0

    def add_scores(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Add scores ``[len(rows), k]`` computed elsewhere to the rows' sums (e.g. one forward standing for many)."""
        values = values.double()
        if self.total is None:
            self.total = torch.zeros((len(self.sample), values.shape[1]), dtype=torch.float64, device=values.device)
        self.total.index_add_(0, rows.to(values.device), values)

    def sums(self) -> torch.Tensor | None:
        """Forward what is queued; the summed scores ``[B*K, k]`` (float64), None if nothing was added."""
        self._flush()
        return self.total


def row_blocks(rows: torch.Tensor, size: tuple[int, int], batch_size: int) -> list[torch.Tensor]:
    """``rows`` cut into blocks whose masks fit :data:`MASK_BLOCK_ELEMENTS` (at least one batch's worth)."""
    per = max(int(batch_size), MASK_BLOCK_ELEMENTS // max(1, size[0] * size[1]), 1)
    return list(rows.split(per))


def sscam_weights(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    a: torch.Tensor,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 32,
    *,
    num_samples: int = 10,
    std: float = 2.0,
    seed: int = 0,
    noise: MaskNoiseFn | None = None,
    align_corners: bool = False,
    normalize_first: bool = False,
) -> torch.Tensor:
    """Channel weights ``alpha [B, K, k]`` (softmax over K) for ``k`` targets per image.

    Args as :func:`~camkit.cam.methods.scorecam.scorecam_weights`, plus the noise (module docstring).
    """
    b, kch, h, w = a.shape
    size = (int(x.shape[-2]), int(x.shape[-1]))
    n = max(1, int(num_samples))
    flat = a.reshape(b * kch, 1, h, w).float()
    sample = torch.arange(b, device=a.device).repeat_interleave(kch)
    batches = MaskedBatches(forward, x, sample, select, batch_size, n * b * kch)
    for rows in row_blocks(torch.arange(b * kch, device=a.device), size, batch_size):
        base = feature_masks(flat[rows], size, align_corners, normalize_first)  # the same for every copy
        for copy in range(n):
            batches.add(rows, base + _noise(copy, rows, kch, size, std, seed, noise, base))
    sums = batches.sums()
    assert sums is not None
    return (sums / n).float().reshape(b, kch, -1).softmax(dim=1)


def _noise(copy: int, rows: torch.Tensor, kch: int, size: tuple[int, int], std: float, seed: int,
           noise: MaskNoiseFn | None, like: torch.Tensor) -> torch.Tensor:
    """The noise fields ``[len(rows), 1, H, W]`` of one copy: one seeded field per channel, shared by the images."""
    if noise is not None:
        return noise(copy, rows).to(device=like.device, dtype=like.dtype)
    channels, which = torch.unique(rows % kch, return_inverse=True)
    fields = torch.cat([seeded_normal(seed, (copy, k), (1, 1, *size), std, like.device).to(like.dtype) for k in channels.tolist()])
    if len(channels) == len(rows) and torch.equal(which, torch.arange(len(rows), device=which.device)):
        return fields  # one image: the rows are the channels, in order
    return fields[which]


def sscam_maps(a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``sum_k alpha_k A_k``: activations ``[B, K, h, w]``, weights ``[B, K, k]`` -> maps ``[B, k, h, w]``."""
    return torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)


def run(call: MethodCall) -> MethodOutput:
    """``compute_method_maps(method="sscam")``: SS-CAM at the target layer, masked inputs ``call.batch_size`` per forward."""
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    with torch.inference_mode():
        a, logits = activations_and_logits(model, x, full, need_grad=False)
        idx, s = target_scores(logits, call.targets, call.categories)
        select = score_selector(call.targets, idx, call.categories)
        alpha = sscam_weights(model, x, a, select, call.batch_size, seed=call.seed)
        maps = torch.einsum("bkhw,bkj->bjhw", a.float(), alpha)
    return MethodOutput(idx, s, logits, maps, display_layer(model, full))
