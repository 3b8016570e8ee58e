"""The CAM method family on one engine: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM,
Score-CAM, Eigen-CAM.

``compute_method_maps(model, x, method=..., classes=..., layer=..., batch_size=...)`` returns a
:class:`MethodBatch` (a :class:`~camkit.cam.engine.CAMBatch` with ``method`` and ``layer``).
:data:`METHODS` lists each method's name, paper and whether it needs gradients.
"""

from .api import MethodBatch, compute_method_maps, default_method
from .base import METHODS, MethodInfo, auto_layer, method_info, probe_spatial_layers, resolve_layer

__all__ = [
    "METHODS", "MethodBatch", "MethodInfo", "auto_layer", "compute_method_maps", "default_method",
    "method_info", "probe_spatial_layers", "resolve_layer",
]
