"""The blocks a model is randomized by, top (logits) first, and their re-initialisation.

Adebayo et al. ("Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv 1810.03292) re-initialise a
trained network layer by layer from the logits down to the input and watch the saliency maps. Here a
*block* is a unit of the network's top-level structure: each direct child of the network, with
containers (``nn.Sequential`` / ``nn.ModuleList`` stages such as ResNet's ``layer1`` or
EfficientNet's ``blocks``) expanded one level, and a normalisation layer that directly follows a
block merged into it (``conv_stem`` + ``bn1``). Order is execution order, found by one probe forward.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class Block:
    """A named group of modules re-initialised together; ``names`` are dotted paths in the model."""

    name: str
    names: list[str] = field(default_factory=list)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _units(root: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in root.named_children():
        if not _has_params(child):
            continue
        full = f"{prefix}{name}"
        parts = [(n, c) for n, c in child.named_children() if _has_params(c)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(parts) > 1:
            out.extend((f"{full}.{n}", c) for n, c in parts)
        else:
            out.append((full, child))
    return out


def randomization_blocks(model: nn.Module, probe: torch.Tensor) -> list[Block]:
    """Blocks of ``model`` from the output down to the input (the cascade's order).

    Args:
        model: a camkit model (its ``net`` is walked) or any ``nn.Module`` returning logits.
        probe: a normalised input ``[1, 3, H, W]`` for the one forward that records execution order.
    """
    root = model.net if hasattr(model, "net") and isinstance(model.net, nn.Module) else model
    prefix = "net." if root is not model else ""
    units = _units(root, prefix)
    order: dict[str, int] = {}
    handles = []
    for name, module in units:
        def hook(_m, _i, _o, name=name):
            order.setdefault(name, len(order))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(probe)
    finally:
        for h in handles:
            h.remove()
    ran = sorted((n for n, _ in units if n in order), key=order.__getitem__)
    mods = dict(units)
    blocks: list[Block] = []
    for name in ran:
        if blocks and isinstance(mods[name], _NORMS):
            blocks[-1].names.append(name)  # a norm belongs to the conv/linear it normalises
            continue
        blocks.append(Block(name.removeprefix("net."), [name]))
    return blocks[::-1]


def randomize_(model: nn.Module, block: Block, seed: int) -> None:
    """Re-initialise every layer of ``block`` in place with its own ``reset_parameters`` (seeded).

    Layers without ``reset_parameters`` get their parameters drawn from N(0, 0.01^2). Normalisation
    layers reset to the identity (weight 1, bias 0, running mean 0 / var 1), as PyTorch initialises them.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in block.names:
            for m in model.get_submodule(name).modules():
                if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                    m.reset_parameters()
                elif any(True for _ in m.parameters(recurse=False)):
                    with torch.no_grad():
                        for p in m.parameters(recurse=False):
                            p.normal_(0.0, 0.01)


def randomized_copies(model: nn.Module, blocks: list[Block], mode: str = "cascading", seed: int = 0):
    """Yield ``(block, model copy)`` for each block; the user's model is never modified.

    ``mode="cascading"``: copy k has blocks 0..k randomized (top down, cumulative).
    ``mode="independent"``: copy k has block k alone randomized.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    current = copy.deepcopy(model)
    for k, block in enumerate(blocks):
        if mode == "independent":
            current = copy.deepcopy(model)
        randomize_(current, block, seed + k)
        yield block, current
