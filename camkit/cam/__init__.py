"""CAM engine (exact CAM from pool+linear heads)."""

from .engine import CAMBatch, cams_from_features, compute_cams, resolve_class, select_classes, upsample

__all__ = ["CAMBatch", "cams_from_features", "compute_cams", "resolve_class", "select_classes", "upsample"]
