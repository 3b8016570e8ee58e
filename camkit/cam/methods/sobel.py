"""Sobel: a model-agnostic baseline for the metrics (pytorch-grad-cam's ``sobel_cam``).

The map is the Sobel gradient magnitude of the grey image: with ``I`` the luma ``0.299 R + 0.587 G +
0.114 B`` of the image in [0, 255] and the 3x3 Sobel kernels (borders reflected without repeating the
edge pixel, OpenCV's default ``BORDER_REFLECT_101``):

    M = 0.5 |I * Sobel_x| + 0.5 |I * Sobel_y|        at the input's resolution, the same for every class

The input is un-normalised with the model's ``preprocess.mean``/``std`` when it has them (camkit
models do), otherwise read as RGB in [0, 1]. pytorch-grad-cam works on a uint8 image and rounds
three times (the grey image, each ``|gradient|`` saturated to 0..255 by ``convertScaleAbs``, the
weighted sum); camkit keeps floats. A method that localizes no better than edges has not used the class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ModelError
from .base import MethodCall, MethodOutput, class_agnostic, target_scores

LUMA = (0.299, 0.587, 0.114)
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` grey image -> ``[B, H, W]`` ``0.5 |G_x| + 0.5 |G_y|`` (reflect-101 borders, float32)."""
    g = gray.float()[:, None]
    kx = torch.tensor(SOBEL_X, dtype=g.dtype, device=g.device)
    k = torch.stack([kx, kx.T])[:, None]  # [2, 1, 3, 3]; conv2d correlates, as cv2.Sobel does
    gxy = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="reflect"), k)
    return 0.5 * gxy.abs().sum(dim=1)


def rgb255(model, x: torch.Tensor) -> torch.Tensor:
    """The normalised input ``[B, 3, H, W]`` back to RGB in [0, 255] with the model's mean/std (if any)."""
    pre = getattr(model, "preprocess", None)
    mean, std = getattr(pre, "mean", None), getattr(pre, "std", None)
    x = x.float()
    if mean is not None and std is not None:
        x = x * torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None] + torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    return x * 255.0


def run(call: MethodCall) -> MethodOutput:
    if call.layer is not None:
        raise ModelError("sobelcam works on the input image; layer= does not apply to it")
    with torch.inference_mode():
        logits = call.model(call.x)
        idx, s = target_scores(logits, call.targets, call.categories)
        rgb = rgb255(call.model, call.x)
        gray = torch.einsum("c,bchw->bhw", torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device), rgb)
        maps = class_agnostic(sobel_magnitude(gray), idx.shape[1])
    return MethodOutput(idx, s, logits, maps, "input")
