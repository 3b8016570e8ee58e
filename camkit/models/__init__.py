"""Model adapters and the registry (see :mod:`camkit.models.registry`)."""

from .cam_model import CAMModel
from .registry import DEFAULT_MODEL, ModelSpec, get_spec, list_models, load_model

__all__ = ["CAMModel", "DEFAULT_MODEL", "ModelSpec", "get_spec", "list_models", "load_model"]
