"""The CAM method family on one engine.

Layer maps: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Grad-CAM element-wise, Eigen-CAM,
Eigen-Grad-CAM, Seg-Eigen-CAM, KPCA-CAM, FEM, Score-CAM, Ablation-CAM, ShapleyCAM, Finer-CAM,
Deep Feature Factorization, Random-CAM (a baseline), and the torch-cam catalogue (Smooth Grad-CAM++,
SS-CAM, IS-CAM, LeGrad). Input-resolution maps: FullGrad, Guided Backprop, Guided Grad-CAM,
RefineCAM, SESS, Sobel (a baseline).

``compute_method_maps(model, x, method=..., classes=..., layer=..., batch_size=...)`` returns a
:class:`MethodBatch` (a :class:`~camkit.cam.engine.CAMBatch` with ``method`` and ``layer``).
:data:`METHODS` lists each method's name, paper, whether it needs gradients and the resolution of
its maps; :func:`default_method` is the one rule for the method used when none is named.
"""

from .api import MethodBatch, compute_method_maps, default_method, reads_layer_and_logits_only
from .base import (
    METHODS,
    MethodInfo,
    auto_layer,
    layer_modules,
    layer_spec,
    method_info,
    probe_spatial_layers,
    resolve_layer,
)
from .smoothing import check_smooth

__all__ = [
    "METHODS", "MethodBatch", "MethodInfo", "auto_layer", "check_smooth", "compute_method_maps", "default_method",
    "layer_modules", "layer_spec", "method_info", "probe_spatial_layers", "reads_layer_and_logits_only", "resolve_layer",
]
