"""Registers vision transformers and modern backbones: torchvision names and the ``timm/<name>`` namespace.

- torchvision ``convnext_{tiny,small,base,large}`` (exact CAM through the head's LayerNorm),
  ``swin_{t,s,b}`` and ``swin_v2_{t,s,b}`` (exact: the norm comes before the pool), ``vit_*`` and
  ``maxvit_t`` (gradient CAMs: class-token and MLP heads); see
  :mod:`camkit.models.torchvision_transformers`.
- ``timm/<name>``: any timm model, classified by its head on a weightless instance
  (:func:`camkit.models.timm_families.timm_family_spec`); ViT/DeiT/BEiT/EVA/Swin/ConvNeXt/MaxViT get
  their token layout, other networks the pool + linear adapter of :mod:`camkit.models.timm_adapter`.

Hugging Face models are wrapped with :func:`camkit.models.hf_adapter.build_hf` / ``wrap_hf`` (the
``hf`` extra); they have no registry names.
"""

from __future__ import annotations

from functools import partial

from .imagenet import imagenet_categories
from .registry import ModelSpec, register, register_prefix
from .timm_families import timm_family_spec
from .torchvision_transformers import FAMILY_TEXT, TORCHVISION_TRANSFORMERS, build_torchvision_transformer

for _builder, _family in TORCHVISION_TRANSFORMERS.items():
    register(ModelSpec(
        _builder, "torchvision", "exact" if _family in ("convnext", "swin") else "gradient",
        f"torchvision {_builder}: {FAMILY_TEXT[_family]}",
        partial(build_torchvision_transformer, _builder), classes=imagenet_categories, family=__name__,
    ))

register_prefix("timm/", timm_family_spec)
