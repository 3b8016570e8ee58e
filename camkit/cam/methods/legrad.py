"""LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature
Formation Sensitivity", ICCV 2025, arXiv 2404.03214): gradients with respect to attention maps.

For every explained transformer block ``l`` (default: all of them), the block's output tokens ``z^l``
are put through the model's own head (final norm, the model's pooling, classifier), giving the
layer's class scores ``s^l = head(norm(z^l))`` (the last block gives the logits themselves). With
``A^l [B, heads, N, N]`` the block's post-softmax attention probabilities:

    E^l = (1 / (heads * N)) sum_{h, i} ReLU(ds^l / dA^l_{h, i, :})      [B, N]  (mean over heads and queries)
    E   = (1 / L) sum_l E^l,  class/register key tokens dropped, reshaped to the patch grid h x w

returned raw (non-negative, at the patch grid); the paper's final min-max normalisation is the
``minmax`` normalisation downstream. Each ``A^l`` is made a leaf of the graph (the network continues
from it), and the network goes on from a detached copy of block ``l``'s output, so ``A^l`` reaches
``s^l`` and no other block's score: the backward of ``sum_l s^l`` gives every ``ds^l/dA^l`` exactly, each
through block ``l`` and the head only. One forward, one ``autograd.grad`` per explained class (all blocks
at once), no parameter gradients; the attention is computed once per block, from the leaf.

Supported networks: timm ``VisionTransformer`` (its ``Attention`` run unfused for the call, the
probabilities read at ``attn_drop``) and torchvision ``VisionTransformer`` (``nn.MultiheadAttention``
run explicitly from its own weights in place of its fused kernel), bare or wrapped as ``model.net``. Token layout (how many
class/register tokens, the patch grid): the model's ``reshape_activations`` when it has one (the
token seam of :mod:`camkit.cam.methods.base`, applied to ``E`` as a 1-channel token map), otherwise
read from the ViT (timm ``num_prefix_tokens`` and ``patch_embed``; torchvision: 1 class token,
``image_size / patch_size``).

Difference from torch-cam 0.5.0 ``LeGrad`` (checked in the parity test): torch-cam's built-in score for
torchvision ViTs pools the *mean of all tokens* (``heads(ln(mean_n z^l))``), while the torchvision ViT
classifies the class token; camkit uses the model's own pooling, so the last block's score is the
model's logit. Given camkit's projection (``score_projection=``), torch-cam's maps equal camkit's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from ...models.kinds import ForeignNet
from .base import MethodCall, MethodOutput, target_scores


def find_vit(model: nn.Module) -> tuple[str, ForeignNet]:
    """``("timm" | "torchvision", vit)`` for a timm/torchvision VisionTransformer, bare or as ``model.net``."""
    for cand in (model, getattr(model, "net", None)):
        if cand is None:
            continue
        blocks = getattr(cand, "blocks", None)
        if isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[0], "attn") and hasattr(cand, "forward_head"):
            return "timm", cand
        enc = getattr(cand, "encoder", None)
        if enc is not None and hasattr(enc, "layers") and hasattr(cand, "heads") and hasattr(cand, "class_token"):
            return "torchvision", cand
    raise ModelError(
        f"LeGrad explains vision transformers (timm or torchvision VisionTransformer); "
        f"{getattr(model, 'name', type(model).__name__)} is not one: use a CAM method (gradcam, scorecam, ...)"
    )


def vit_blocks(kind: str, vit: ForeignNet) -> list[nn.Module]:
    return list(vit.blocks) if kind == "timm" else list(vit.encoder.layers)


def block_names(model: nn.Module, layer: str | Sequence[str] | None) -> list[str]:
    """Full module names (in ``model``) of the blocks to explain: all blocks when ``layer`` is None."""
    kind, vit = find_vit(model)
    names = {id(m): n for n, m in model.named_modules()}
    blocks = vit_blocks(kind, vit)
    if layer is None:
        return [names[id(b)] for b in blocks]
    wanted = [layer] if isinstance(layer, str) else list(layer)
    mods = dict(model.named_modules())
    out = []
    ok = {id(b) for b in blocks}
    for w in wanted:
        full = next((c for c in (w, "net." + w) if c and c in mods), None)
        if full is None or id(mods[full]) not in ok:
            shown = [names[id(b)].removeprefix("net.") for b in blocks]
            raise ModelError(f"LeGrad's layer {w!r} is not a transformer block; blocks: {', '.join(shown)}")
        out.append(full)
    return out


def vit_head(kind: str, vit: ForeignNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens ``[B, N, C]`` of any block -> class scores ``[B, C]`` by the model's own norm, pooling and classifier."""
    if kind == "timm":
        return lambda z: vit.forward_head(vit.norm(z))
    return lambda z: vit.heads(vit.encoder.ln(z)[:, 0])


def token_layout(model: nn.Module, kind: str, vit: ForeignNet, x: torch.Tensor, n_tokens: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping per-token values ``[B, N]`` to the patch grid ``[B, 1, h, w]``."""
    reshape = getattr(model, "reshape_activations", None)
    if callable(reshape):
        return lambda r: reshape(r.unsqueeze(-1))
    if kind == "timm":
        prefix = int(getattr(vit, "num_prefix_tokens", 1))
        pe = vit.patch_embed
        if getattr(vit, "dynamic_img_size", False) and hasattr(pe, "dynamic_feat_size"):
            grid = tuple(pe.dynamic_feat_size((int(x.shape[-2]), int(x.shape[-1]))))
        else:
            grid = tuple(pe.grid_size)
    else:
        prefix = 1
        p = int(vit.patch_size)
        grid = (int(x.shape[-2]) // p, int(x.shape[-1]) // p)
    if grid[0] * grid[1] != n_tokens - prefix:
        side = math.isqrt(n_tokens - prefix)
        raise ModelError(f"{n_tokens} tokens do not fit {prefix} prefix tokens and a {grid[0]}x{grid[1]} patch grid "
                         f"(a square grid would be {side}x{side}); give the model a reshape_activations")
    return lambda r: r[:, prefix:].reshape(r.shape[0], 1, grid[0], grid[1])


# ---------------------------------------------------------------- attention probes


@contextmanager
def _timm_probe(block: ForeignNet, store: dict, slot: int) -> Iterator[None]:
    attn = block.attn
    fused = getattr(attn, "fused_attn", False)

    def hook(_m, _i, out):
        leaf = out.detach().requires_grad_(True)
        store[slot] = leaf
        return leaf

    attn.fused_attn = False  # the explicit path computes softmax(q k^T) and passes it through attn_drop
    handle = attn.attn_drop.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        attn.fused_attn = fused


@contextmanager
def _torchvision_probe(block: ForeignNet, store: dict, slot: int) -> Iterator[None]:
    """Run the block's ``nn.MultiheadAttention`` explicitly for the call (its ``forward`` replaced on the
    instance), so that the attention is computed once, from the probabilities made a leaf."""
    mha: nn.MultiheadAttention = block.self_attention
    if not mha.batch_first or mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
        raise ModelError("LeGrad supports batch-first nn.MultiheadAttention with packed q/k/v projections")

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
                is_causal=False):
        if key is not query or value is not query or key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ModelError("LeGrad explains unmasked self-attention (query, key and value the same tokens)")
        b, n, e = query.shape
        heads = mha.num_heads
        d = e // heads
        qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        qh, kh, vh = qkv.unbind(0)
        probs = torch.softmax((qh * d**-0.5) @ kh.transpose(-2, -1), dim=-1)
        leaf = probs.detach().requires_grad_(True)
        store[slot] = leaf
        o = (leaf @ vh).transpose(1, 2).reshape(b, n, e)
        weights = None if not need_weights else leaf.mean(dim=1) if average_attn_weights else leaf
        return mha.out_proj(o), weights

    own = vars(mha).get("forward")  # an instance-level forward of the caller's, put back afterwards
    vars(mha)["forward"] = forward
    try:
        yield
    finally:
        if own is None:
            vars(mha).pop("forward", None)
        else:
            vars(mha)["forward"] = own


def legrad_maps(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    make_score: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(maps [B, k, h, w], logits [B, C])`` for the blocks ``layers`` (full names in ``model``).

    ``make_score(final logits [B, C])`` returns ``score(logits [B, C]) -> [B, k]``, which picks the
    explained scores from any block's class scores (the classes are chosen once, on the model's own
    logits, and are the same for every block). Call inside ``model_state`` (frozen parameters);
    gradients are turned on here.
    """
    kind, vit = find_vit(model)
    head = vit_head(kind, vit)
    probe = _timm_probe if kind == "timm" else _torchvision_probe
    attn: dict[int, torch.Tensor] = {}
    tokens: dict[int, torch.Tensor] = {}

    def keep_tokens(i: int) -> Callable[..., torch.Tensor]:
        def hook(_m, _inp, out):
            tokens[i] = out
            return out.detach()  # the network goes on from a copy: s^m (m > l) does not reach A^l

        return hook

    if x.is_inference():
        x = x.clone()
    blocks = list(dict.fromkeys(layers))  # a block named twice counts twice in the mean, probed once
    weights = [layers.count(name) for name in blocks]
    with ExitStack() as stack, torch.enable_grad():
        for i, name in enumerate(blocks):
            block = model.get_submodule(name)
            stack.enter_context(probe(block, attn, i))
            h = block.register_forward_hook(keep_tokens(i))
            stack.callback(h.remove)
        logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ModelError(f"the model returned {type(logits).__name__}, not logits [B, C]")
        missing = [blocks[i] for i in range(len(blocks)) if i not in attn or i not in tokens]
        if missing:
            raise ModelError(f"LeGrad's blocks {missing} were not run by the forward pass")
        score = make_score(logits.detach())
        # s = sum_l s^l: A^l reaches s^l only (block l's output is detached downstream), so one backward
        # per explained class gives every ds^l/dA^l at once.
        s = torch.stack([score(head(tokens[i])) for i in range(len(blocks))]).sum(dim=0)  # [B, k]
        leaves = [attn[i] for i in range(len(blocks))]
        k = s.shape[1]
        total = torch.zeros((x.shape[0], k, leaves[0].shape[-1]), dtype=torch.float64, device=leaves[0].device)
        for j in range(k):
            grads = torch.autograd.grad(s[:, j].sum(), leaves, retain_graph=j < k - 1, allow_unused=True)
            for g, w in zip(grads, weights, strict=True):
                if g is not None:  # None: the block's score does not depend on its attention (zero relevance)
                    total[:, j] += w * g.clamp_min_(0).mean(dim=(1, 2)).double()  # [B, N keys]
    total = total / len(layers)
    b, k, n = total.shape
    to_grid = token_layout(model, kind, vit, x, n)
    maps = to_grid(total.reshape(b * k, n)).reshape(b, k, *to_grid(total[:1, 0]).shape[-2:])
    return maps.float(), logits.detach()


def run(call: MethodCall) -> MethodOutput:
    """``compute_method_maps(method="legrad")``: ``layer`` = a block name or a list of them (default: every block)."""
    model, x = call.model, call.x
    names = block_names(model, call.layer)
    chosen: dict[str, torch.Tensor] = {}

    def make_score(final: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        idx, s = target_scores(final, call.targets, call.categories)
        chosen["idx"], chosen["s"] = idx, s
        if callable(call.targets) and not isinstance(call.targets, torch.Tensor):
            return lambda logits: target_scores(logits, call.targets, call.categories)[1]
        return lambda logits: logits.gather(1, idx.to(logits.device))

    maps, logits = legrad_maps(model, x, names, make_score)
    shown = [n.removeprefix("net.") for n in names]
    layer = shown[0] if len(shown) == 1 else f"{shown[0]}..{shown[-1]} ({len(shown)} blocks)" if len(shown) > 3 else "+".join(shown)
    return MethodOutput(chosen["idx"], chosen["s"].detach(), logits, maps, layer)
