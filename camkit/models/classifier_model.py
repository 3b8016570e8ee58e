"""A classifier whose head is not pool + linear (VGG/AlexNet FC heads, MobileNetV3, ConvNeXt).

Such a head has no CAM decomposition, so :class:`ClassifierModel` carries only the metadata camkit
reports (name, preprocessing, class names, weights) around the original network; the gradient and
perturbation methods of :mod:`camkit.cam.methods` explain it through a target layer (``default_layer``,
the map the head consumes, unless ``layer=`` says otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

from ..preprocess import Preprocess
from .kinds import CamKind


class ClassifierModel(nn.Module):
    """``forward(x) = net(x)``: logits ``[B, C]`` for normalised input ``[B, 3, H, W]``.

    Args:
        net: the network (its parameters live under ``net.``, like CAMModel's).
        default_layer: dotted module name inside ``net`` of the target layer used when none is given.
        name, preprocess, categories, weights_name: metadata the CLI and API report.
        num_classes: the class count (default: ``out_features`` of the last ``nn.Linear`` in ``net``).
    """

    cam_kind: CamKind

    def __init__(
        self,
        net: nn.Module,
        *,
        default_layer: str,
        name: str = "model",
        preprocess: Preprocess | None = None,
        categories: list[str] | None = None,
        weights_name: str | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        net.get_submodule(default_layer)  # fail early on a wrong name
        self.default_layer = "net." + default_layer
        self.name = name
        self.preprocess = preprocess or Preprocess()
        self.categories = categories
        self.cam_kind = "gradient"
        self.weights_name = weights_name
        if num_classes is None:
            linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
            num_classes = linears[-1].out_features if linears else 0
        self._num_classes = int(num_classes)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, cam_kind={self.cam_kind}, classes={self.num_classes}, default_layer={self.default_layer[4:]!r}"
