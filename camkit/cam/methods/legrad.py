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
from it), so ``ds^l/dA^l`` is exact and the backward of layer ``l`` runs through block ``l`` and the
head only; one ``autograd.grad`` per block and explained class, no parameter gradients.

Supported networks: timm ``VisionTransformer`` (its ``Attention`` run unfused for the call, the
probabilities read at ``attn_drop``) and torchvision ``VisionTransformer`` (``nn.MultiheadAttention``
recomputed explicitly from its own weights), bare or wrapped as ``model.net``. Token layout (how many
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
def _timm_probe(block: ForeignNet, store: dict, key: int) -> Iterator[None]:
    attn = block.attn
    fused = getattr(attn, "fused_attn", False)

    def hook(_m, _i, out):
        leaf = out.detach().requires_grad_(True)
        store[key] = leaf
        return leaf

    attn.fused_attn = False  # the explicit path computes softmax(q k^T) and passes it through attn_drop
    handle = attn.attn_drop.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        attn.fused_attn = fused


@contextmanager
def _torchvision_probe(block: ForeignNet, store: dict, key: int) -> Iterator[None]:
    mha: nn.MultiheadAttention = block.self_attention
    if not mha.batch_first or mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
        raise ModelError("LeGrad supports batch-first nn.MultiheadAttention with packed q/k/v projections")

    def hook(m, args, kwargs, out):
        q = args[0] if args else kwargs["query"]
        b, n, e = q.shape
        heads = m.num_heads
        d = e // heads
        qkv = F.linear(q, m.in_proj_weight, m.in_proj_bias).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        qh, kh, vh = qkv.unbind(0)
        probs = torch.softmax((qh * d**-0.5) @ kh.transpose(-2, -1), dim=-1)
        leaf = probs.detach().requires_grad_(True)
        store[key] = leaf
        o = (leaf @ vh).transpose(1, 2).reshape(b, n, e)
        return m.out_proj(o), None

    handle = mha.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


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
    if x.is_inference():
        x = x.clone()
    with ExitStack() as stack, torch.enable_grad():
        for i, name in enumerate(layers):
            block = model.get_submodule(name)
            stack.enter_context(probe(block, attn, i))
            h = block.register_forward_hook(lambda _m, _inp, out, i=i: tokens.__setitem__(i, out))
            stack.callback(h.remove)
        logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ModelError(f"the model returned {type(logits).__name__}, not logits [B, C]")
        missing = [layers[i] for i in range(len(layers)) if i not in attn or i not in tokens]
        if missing:
            raise ModelError(f"LeGrad's blocks {missing} were not run by the forward pass")
        score = make_score(logits.detach())
        total: torch.Tensor | None = None
        for i in range(len(layers)):
            s = score(head(tokens[i]))  # [B, k]
            per_class = []
            for j in range(s.shape[1]):
                (g,) = torch.autograd.grad(s[:, j].sum(), attn[i], retain_graph=True, allow_unused=True)
                g = torch.zeros_like(attn[i]) if g is None else g
                per_class.append(g.clamp_min(0).mean(dim=(1, 2)))  # [B, N keys]
            rel = torch.stack(per_class, dim=1).detach().double()  # [B, k, N]
            total = rel if total is None else total + rel
    assert total is not None
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
