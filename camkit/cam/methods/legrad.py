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
at once), no parameter gradients; the attention is computed once per block, from the leaf. For
torchvision's own ``EncoderBlock`` under its class-token head, only the class token's row of ``A^l``
reaches ``s^l`` (the rest of the block works token by token), so the other rows' gradients are exactly
zero and are not computed: the forward runs without a graph and the backward covers the class-token
rows only (``_class_token_relevance``).

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


def _check_mha(mha: nn.MultiheadAttention) -> None:
    if not mha.batch_first or mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
        raise ModelError("LeGrad supports batch-first nn.MultiheadAttention with packed q/k/v projections")


def _self_attention_heads(mha: nn.MultiheadAttention, query, key, value, key_padding_mask, attn_mask, is_causal,
                          need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q, k, v)`` per head, each ``[B, heads, N, d]``, from ``mha``'s packed projection of ``query``; only
    unmasked self-attention is explained; ``need_weights`` True is refused as well (for callers that run the
    fused kernel, which returns no weights)."""
    if key is not query or value is not query or key_padding_mask is not None or attn_mask is not None or is_causal or need_weights:
        raise ModelError("LeGrad explains unmasked self-attention (query, key and value the same tokens)")
    b, n, e = query.shape
    heads = mha.num_heads
    qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, heads, e // heads).permute(2, 0, 3, 1, 4)
    qh, kh, vh = qkv.unbind(0)
    return qh, kh, vh


@contextmanager
def _replaced_forward(module: nn.Module, forward: Callable) -> Iterator[None]:
    """``module.forward`` replaced on the instance for the call (an instance-level forward of the caller's comes back)."""
    own = vars(module).get("forward")
    vars(module)["forward"] = forward
    try:
        yield
    finally:
        if own is None:
            vars(module).pop("forward", None)
        else:
            vars(module)["forward"] = own


@contextmanager
def _torchvision_probe(block: ForeignNet, store: dict, slot: int) -> Iterator[None]:
    """Run the block's ``nn.MultiheadAttention`` explicitly for the call, so that the attention is computed
    once, from the probabilities made a leaf (``store[slot]``)."""
    mha: nn.MultiheadAttention = block.self_attention
    _check_mha(mha)

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
                is_causal=False):
        qh, kh, vh = _self_attention_heads(mha, query, key, value, key_padding_mask, attn_mask, is_causal)
        b, n, e = query.shape
        d = e // mha.num_heads
        probs = torch.softmax((qh * d**-0.5) @ kh.transpose(-2, -1), dim=-1)
        leaf = probs.detach().requires_grad_(True)
        store[slot] = leaf
        o = (leaf @ vh).transpose(1, 2).reshape(b, n, e)
        weights = None if not need_weights else leaf.mean(dim=1) if average_attn_weights else leaf
        return mha.out_proj(o), weights

    with _replaced_forward(mha, forward):
        yield


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
    if x.is_inference():
        x = x.clone()
    blocks = list(dict.fromkeys(layers))  # a block named twice counts twice in the mean, computed once
    mods = [model.get_submodule(name) for name in blocks]
    if kind == "torchvision" and all(_plain_encoder_block(m) for m in mods):
        per_block, logits = _class_token_relevance(model, vit, x, blocks, mods, make_score)
    else:
        per_block, logits = _leaf_relevance(model, kind, vit, x, blocks, mods, make_score)
    total = sum(layers.count(name) * r for name, r in zip(blocks, per_block, strict=True)) / len(layers)
    assert isinstance(total, torch.Tensor)
    b, k, n = total.shape
    to_grid = token_layout(model, kind, vit, x, n)
    maps = to_grid(total.reshape(b * k, n)).reshape(b, k, *to_grid(total[:1, 0]).shape[-2:])
    return maps.float(), logits


Relevance = tuple[list[torch.Tensor], torch.Tensor]  # (per block [B, k, N keys] float64, final logits [B, C])


def _forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ModelError(f"the model returned {type(logits).__name__}, not logits [B, C]")
    return logits


def _check_ran(blocks: list[str], *stores: dict) -> None:
    missing = [name for i, name in enumerate(blocks) if any(i not in st for st in stores)]
    if missing:
        raise ModelError(f"LeGrad's blocks {missing} were not run by the forward pass")


def _relevance(s: torch.Tensor, leaves: list[torch.Tensor], n_queries: int) -> list[torch.Tensor]:
    """``(1 / (heads * N)) sum_{h, i} ReLU(ds / dA_{h, i, :})`` ``[B, k, N]`` (float64) of each leaf ``A [B, heads, q, N]``,
    ``s [B, k]`` the sum of the blocks' scores (each leaf reaching its own block's score only); one
    backward per explained class. ``n_queries``: the queries of the full attention (rows not in a leaf
    have a zero gradient)."""
    k = s.shape[1]
    out = [torch.zeros((a.shape[0], k, a.shape[-1]), dtype=torch.float64, device=a.device) for a in leaves]
    for j in range(k):
        grads = torch.autograd.grad(s[:, j].sum(), leaves, retain_graph=j < k - 1, allow_unused=True)
        for r, g, a in zip(out, grads, leaves, strict=True):
            if g is not None:  # None: the block's score does not depend on its attention (zero relevance)
                r[:, j] = g.clamp_min_(0).sum(dim=(1, 2)).double() / (a.shape[1] * n_queries)
    return out


def _leaf_relevance(model: nn.Module, kind: str, vit: ForeignNet, x: torch.Tensor, blocks: list[str],
                    mods: list[nn.Module], make_score: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]) -> Relevance:
    """Any supported ViT: every ``A^l`` a leaf, block outputs detached downstream, one backward per class."""
    head = vit_head(kind, vit)
    probe = _timm_probe if kind == "timm" else _torchvision_probe
    attn: dict[int, torch.Tensor] = {}
    tokens: dict[int, torch.Tensor] = {}

    def keep_tokens(i: int) -> Callable[..., torch.Tensor]:
        def hook(_m, _inp, out):
            tokens[i] = out
            return out.detach()  # the network goes on from a copy: s^m (m > l) does not reach A^l

        return hook

    with ExitStack() as stack, torch.enable_grad():
        for i, block in enumerate(mods):
            stack.enter_context(probe(block, attn, i))
            h = block.register_forward_hook(keep_tokens(i))
            stack.callback(h.remove)
        logits = _forward_logits(model, x)
        _check_ran(blocks, attn, tokens)
        score = make_score(logits.detach())
        s = torch.stack([score(head(tokens[i])) for i in range(len(blocks))]).sum(dim=0)  # [B, k]
        leaves = [attn[i] for i in range(len(blocks))]
        return _relevance(s, leaves, leaves[0].shape[-2]), logits.detach()


def _plain_encoder_block(block: nn.Module) -> bool:
    from torchvision.models.vision_transformer import EncoderBlock  # torchvision only when a torchvision ViT is explained

    return type(block) is EncoderBlock


def _class_token_relevance(model: nn.Module, vit: ForeignNet, x: torch.Tensor, blocks: list[str], mods: Sequence[ForeignNet],
                           make_score: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]) -> Relevance:
    """torchvision ``EncoderBlock``s under the model's class-token head: only the class token's query row of ``A^l``.

    The head reads the class token of ``z^l`` only, and everything after the attention in the block
    (dropout, residual, ``ln_2``, MLP) works token by token, so ``s^l`` depends on ``A^l`` through the class
    token's row ``A^l_{:, 0, :}`` alone: every other row's gradient is exactly zero. The forward therefore
    runs without a graph (the attention by the fused kernel, its class-token row kept), and each block's
    class token is then recomputed from that row, a leaf: ``y = x_0 + out_proj(A_0 V)``,
    ``z_0 = y + mlp(ln_2(y))``, ``s^l = head(z_0)``; one backward per class through these rows only.
    """
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # block -> (class-token row of A [B, h, 1, N], V [B, h, N, d])
    first: dict[int, torch.Tensor] = {}  # block -> its input's class token [B, 1, E]
    with ExitStack() as stack, torch.no_grad():
        for i, block in enumerate(mods):
            stack.enter_context(_class_row_probe(block, kept, i))
            h = block.register_forward_pre_hook(lambda _m, args, i=i: first.__setitem__(i, args[0][:, :1]))
            stack.callback(h.remove)
        logits = _forward_logits(model, x)
    _check_ran(blocks, kept, first)
    score = make_score(logits)
    head = vit_head("torchvision", vit)
    with torch.enable_grad():
        leaves, scores = [], []
        for i, block in enumerate(mods):
            row, v = kept[i]
            leaf = row.requires_grad_(True)
            mha = block.self_attention
            b, heads, _, d = v.shape
            y = first[i] + block.dropout(mha.out_proj((leaf @ v).transpose(1, 2).reshape(b, 1, heads * d)))
            scores.append(score(head(y + block.mlp(block.ln_2(y)))))
            leaves.append(leaf)
        return _relevance(torch.stack(scores).sum(dim=0), leaves, leaves[0].shape[-1]), logits  # N queries = N keys


@contextmanager
def _class_row_probe(block: ForeignNet, kept: dict, slot: int) -> Iterator[None]:
    """The block's ``nn.MultiheadAttention`` run by the fused kernel for the call, keeping the class token's
    row of the probabilities and the values (``kept[slot]``)."""
    mha: nn.MultiheadAttention = block.self_attention
    _check_mha(mha)

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
                is_causal=False):
        qh, kh, vh = _self_attention_heads(mha, query, key, value, key_padding_mask, attn_mask, is_causal, need_weights)
        b, n, e = query.shape
        d = e // mha.num_heads
        kept[slot] = (torch.softmax((qh[:, :, :1] * d**-0.5) @ kh.transpose(-2, -1), dim=-1), vh)
        o = F.scaled_dot_product_attention(qh, kh, vh)
        return mha.out_proj(o.transpose(1, 2).reshape(b, n, e)), None

    with _replaced_forward(mha, forward):
        yield


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
