"""Training and evaluation transforms built from a model's :class:`~camkit.preprocess.Preprocess`.

- train (torchvision.transforms.v2): for inputs of 64 pixels or more, ``RandomResizedCrop`` to the
  model's crop size (scale 0.25-1, the weights' interpolation) and a horizontal flip; for small
  (CIFAR-scale) inputs, resize to the crop size, a random crop with ``crop // 8`` zero padding and a
  flip (the standard CIFAR augmentation). Then [0, 1] float and the model's mean/std.
- eval: the model's own ``Preprocess`` (resize shorter side, centre crop, normalise), exactly what
  ``camkit explain`` feeds the network.

Both take an RGB PIL image and return a float32 tensor ``[3, crop, crop]``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..preprocess import Preprocess

SMALL_INPUT = 64


def train_transform(pre: Preprocess) -> Callable:
    """Augmenting transform for training at ``pre.crop`` pixels, normalised like ``pre``."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    interp = InterpolationMode(pre.interpolation)
    if pre.crop < SMALL_INPUT:
        geometric = [
            v2.Resize((pre.crop, pre.crop), interpolation=interp, antialias=True),
            v2.RandomCrop(pre.crop, padding=max(1, pre.crop // 8)),
            v2.RandomHorizontalFlip(),
        ]
    else:
        geometric = [
            v2.RandomResizedCrop(pre.crop, scale=(0.25, 1.0), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometric,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )


def eval_transform(pre: Preprocess) -> Callable:
    """The model's deterministic eval transform (a Preprocess is a PIL -> tensor callable)."""
    return pre
