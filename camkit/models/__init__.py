"""Models camkit explains, by registry name (:func:`load_model`, :func:`list_models`).

:mod:`~camkit.models.registry` holds the names; each family module below registers its models when
imported. Adding a family is one new module that calls :func:`~camkit.models.registry.register`
(or :func:`~camkit.models.registry.register_prefix` for a namespace such as ``timm/<name>``) and
one import line here. Families import torchvision/timm only when one of their models is built.
"""

# Each family registers its models on import, in this order, which is list_models()' order: not sorted.
# isort: off
from . import lite0, torchvision_exact, gap_surgery, cifar, torchvision_gradient, timm_adapter, transformers_family  # noqa: F401
# isort: on
from .cam_model import CAMModel
from .registry import DEFAULT_MODEL, ModelSpec, get_spec, list_models, load_model, register, register_prefix
from .weights_arg import WeightsChoice, parse_weights

__all__ = [
    "CAMModel", "DEFAULT_MODEL", "ModelSpec", "WeightsChoice", "get_spec", "list_models", "load_model",
    "parse_weights", "register", "register_prefix",
]
