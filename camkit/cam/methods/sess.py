"""SESS, Saliency Enhancing with Scaling and Sliding (Tyagi et al., ECCV 2022, arXiv 2207.01769), over Grad-CAM.

A meta-method that makes a CAM robust to object scale and to several instances: the image is resized
to several scales, a sliding window cuts equal patches from each, every patch gets its own Grad-CAM and
classification score, and the patch maps are pasted back and fused. For an input ``H x W``, window
``s = min(H, W)`` and the explained class c (defaults of the paper and of pytorch-grad-cam's ``SESS``):

    scales      n_i = s + round(2 s / 7) * i, i = 0..11       (the shorter side; the longer one scaled alike)
    patches     s x s windows at stride s over each rescaled image (the last window of a row/column is
                shifted back inside the image)
    weight      w_p = softmax(f(patch_p))_c / max_p softmax(f(patch_p))_c     (all ones if the maximum is 0)
    patch map   M_p = w_p * minmax(Up_s(ReLU(GradCAM_c(patch_p))))            (in [0, w_p], at s x s)
    paste       P_p = the map M_p placed at its window in a zero canvas of the rescaled size, resized
                bilinearly (OpenCV INTER_LINEAR) to H x W
    fuse        F(x) = mean of P_p(x) over the patches with P_p(x) > 0        (0 where none)
    smooth      L = GaussianBlur(F, 11 x 11, sigma 5)                          (OpenCV, reflect-101 borders)

Rescaling uses bilinear interpolation with antialiasing (``torchvision.transforms.functional.resize``'s
default on tensors). Maps are at the input's resolution, in [0, 1]. One forward and backward per batch
of ``batch_size`` patches gives both the scores and the Grad-CAMs (pytorch-grad-cam runs the patches
twice, once to score and once for the maps). Cost: 122 patches at the default 12 scales.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ClassSelectionError
from ...normalize import normalize_maps
from ..engine import upsample
from .base import MethodCall, MethodOutput, activations_and_logits, display_layer, resolve_layer, target_scores
from .gradient import gradient_maps


def scales_for(window: int, num_scales: int = 12, step_ratio: float = 2.0 / 7.0) -> list[int]:
    step = int(round(window * step_ratio))
    return [window + step * i for i in range(num_scales)]


def window_starts(length: int, step: int, window: int) -> list[int]:
    """Window origins along one side; the last one is shifted back so every window lies inside."""
    starts = []
    for start in range(0, length, step):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def _resize_short(x: torch.Tensor, short: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def patches_of(x1: torch.Tensor, window: int, step: int, scales: list[int]) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
    """Patches ``[P, 3, s, s]`` of one image ``[1, 3, H, W]`` and their ``(x0, y0, scaled_w, scaled_h)``."""
    out, where = [], []
    for n in scales:
        scaled = _resize_short(x1, n)
        sh, sw = scaled.shape[-2:]
        for y in window_starts(sh, step, window):
            for x in window_starts(sw, step, window):
                out.append(scaled[:, :, y : y + window, x : x + window])
                where.append((x, y, sw, sh))
    return torch.cat(out), where


def sess_map(
    model, x1: torch.Tensor, cls: int, full: str | None, batch_size: int = 32, num_scales: int = 12
) -> np.ndarray:
    """The SESS map ``[H, W]`` (float32) of class ``cls`` for one image ``[1, 3, H, W]``; call inside ``model_state``."""
    hh, ww = x1.shape[-2:]
    window = int(min(hh, ww))
    patches, where = patches_of(x1, window, window, scales_for(window, num_scales))
    scores, cams = [], []
    for start in range(0, len(patches), max(1, int(batch_size))):
        p = patches[start : start + batch_size]
        a, logits = activations_and_logits(model, p, full, need_grad=True)
        with torch.enable_grad():
            sel = logits[:, cls : cls + 1]
            cam = gradient_maps("gradcam", a, sel)[:, 0]
        scores.append(logits.detach().float().softmax(dim=1)[:, cls].clamp_min(0))
        cams.append(normalize_maps(upsample(cam.clamp_min(0).float()[:, None], (window, window), "bilinear")[:, 0], "minmax"))
    s = torch.cat(scores)
    weights = s / s.max() if float(s.max()) > 0 else torch.ones_like(s)
    maps = (torch.cat(cams) * weights[:, None, None]).cpu().numpy()
    total = np.zeros((hh, ww), np.float32)
    count = np.zeros((hh, ww), np.float32)
    for m, (x0, y0, sw, sh) in zip(maps, where, strict=True):
        canvas = np.zeros((sh, sw), np.float32)
        canvas[y0 : y0 + window, x0 : x0 + window] = m
        pasted = cv2.resize(canvas, (int(ww), int(hh)), interpolation=cv2.INTER_LINEAR)
        keep = pasted > 0
        total[keep] += pasted[keep]
        count += keep
    fused = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return cv2.GaussianBlur(fused, (11, 11), 5.0)  # sigmaY defaults to sigmaX


def run(call: MethodCall) -> MethodOutput:
    if callable(call.targets) and not isinstance(call.targets, torch.Tensor):
        raise ClassSelectionError("sess weights its patches by a class's softmax score; pass class ids or names")
    model, x = call.model, call.x
    full = resolve_layer(model, x, call.layer)
    with torch.inference_mode():
        logits = model(x)
        idx, s = target_scores(logits, call.targets, call.categories)
    idx, logits, s = idx.clone(), logits.clone(), s.clone()
    maps = torch.stack([
        torch.stack([torch.from_numpy(sess_map(model, x[b : b + 1], int(c), full, call.batch_size)) for c in idx[b].tolist()])
        for b in range(x.shape[0])
    ]).to(x.device)
    return MethodOutput(idx, s, logits, maps, display_layer(model, full))
