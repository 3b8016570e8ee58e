"""The preprocessing that belongs to a model's weights, and the geometry to map results back.

Two ways to make the network input from a photo:

- ``crop`` (the weights' own eval transform, as torchvision/timm define it): resize so the shorter
  side is ``resize`` pixels (the long side ``int(resize * long / short)``), then take the centre
  ``crop x crop`` square. Only the part of the photo inside the crop window is seen.
- ``squash`` (the WSOL benchmark protocol, wsolevaluation and the CAM paper): resize the whole
  photo to ``crop x crop`` ignoring the aspect ratio.

Both resize with PIL's filters (``Image.resize`` with the named filter, or its bit-exact compiled twin
:func:`camkit.pil_resize.resize_rgb`), which is what torchvision's transforms do for PIL input, so
camkit's tensors equal torchvision's ``weights.transforms()``.

Coordinates: pixel ``i`` covers the continuous interval ``[i, i+1)``; boxes are x0,y0,x1,y1
inclusive pixel indices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from .choices import one_of
from .errors import ParameterError
from .pil_resize import resize_rgb

if TYPE_CHECKING:
    import torch

ResizeMode = Literal["crop", "squash"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]

INTERPOLATIONS: tuple[Interpolation, ...] = ("nearest", "bilinear", "bicubic")
RESIZE_MODES: tuple[ResizeMode, ...] = ("crop", "squash")


def resize_mode_of(mode: str) -> ResizeMode:
    """``mode`` checked to be one of :data:`RESIZE_MODES` (raises :class:`~camkit.errors.ParameterError`)."""
    return one_of("resize_mode", mode, RESIZE_MODES, "a resize mode")


def rgb_triple(values: Iterable[float]) -> tuple[float, float, float]:
    """Three per-channel values (a mean or std) as floats, in R, G, B order; ValueError unless exactly three."""
    r, g, b = (float(v) for v in values)
    return (r, g, b)


def interpolation_of(name: str) -> Interpolation:
    """``name`` checked to be one of :data:`INTERPOLATIONS` (raises :class:`~camkit.errors.ParameterError`)."""
    return one_of("interpolation", name, INTERPOLATIONS, "a supported interpolation")


@dataclass(frozen=True)
class Geometry:
    """How the network input (``input_w x input_h``) sits in the original photo (``width x height``).

    An input pixel's continuous coordinate ``u`` maps to the original's ``(u + crop_x) * scale_x``
    (likewise for y): ``scale_*`` is original pixels per resized pixel, ``crop_*`` the crop offset
    in resized pixels. ``window`` is the region of the original the network saw, continuous
    coordinates ``(x0, y0, x1, y1)``.
    """

    width: int
    height: int
    input_w: int
    input_h: int
    scale_x: float
    scale_y: float
    crop_x: int
    crop_y: int

    @property
    def window(self) -> tuple[float, float, float, float]:
        x0 = self.crop_x * self.scale_x
        y0 = self.crop_y * self.scale_y
        return (x0, y0, x0 + self.input_w * self.scale_x, y0 + self.input_h * self.scale_y)

    def input_to_original_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map inclusive-pixel boxes ``[..., 4]`` on the input to inclusive-pixel boxes on the original.

        A box covering input pixels ``x0..x1`` covers the continuous span ``[x0, x1 + 1)``; that span
        is mapped and the original pixels it overlaps by at least half a pixel are kept, clipped to
        the image. Returns int64.
        """
        b = np.asarray(boxes, dtype=np.float64)
        x0 = (b[..., 0] + self.crop_x) * self.scale_x
        y0 = (b[..., 1] + self.crop_y) * self.scale_y
        x1 = (b[..., 2] + 1 + self.crop_x) * self.scale_x
        y1 = (b[..., 3] + 1 + self.crop_y) * self.scale_y
        out = np.stack(
            [
                np.clip(np.floor(x0 + 0.5), 0, self.width - 1),
                np.clip(np.floor(y0 + 0.5), 0, self.height - 1),
                np.clip(np.ceil(x1 - 0.5) - 1, 0, self.width - 1),
                np.clip(np.ceil(y1 - 0.5) - 1, 0, self.height - 1),
            ],
            axis=-1,
        )
        return out.astype(np.int64)

    def original_to_input_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map float boxes on the original to the input's continuous coordinates (not clipped)."""
        b = np.asarray(boxes, dtype=np.float64)
        return np.stack(
            [
                b[..., 0] / self.scale_x - self.crop_x,
                b[..., 1] / self.scale_y - self.crop_y,
                b[..., 2] / self.scale_x - self.crop_x,
                b[..., 3] / self.scale_y - self.crop_y,
            ],
            axis=-1,
        )


@dataclass(frozen=True)
class Preprocess:
    """A model's input transform: resize, centre crop, interpolation and normalisation.

    ``resize``: shorter side after resizing (``crop`` mode); ``crop``: the square input size;
    ``mean``/``std``: per-channel normalisation of [0, 1] RGB values.
    """

    resize: int = 256
    crop: int = 224
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            resize=int(d["resize"]),
            crop=int(d["crop"]),
            interpolation=interpolation_of(str(d["interpolation"])),
            mean=rgb_triple(d["mean"]),
            std=rgb_triple(d["std"]),
        )

    def with_input_size(self, size: int) -> Preprocess:
        """The same transform for another input size (the resize keeps the weights' crop ratio)."""
        return Preprocess(
            resize=int(round(size * self.resize / self.crop)),
            crop=size,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
        )

    def geometry(self, width: int, height: int, mode: ResizeMode = "crop") -> Geometry:
        """Where the input lands in a ``width x height`` photo for ``mode`` (see the module doc)."""
        if mode == "squash":
            return Geometry(width, height, self.crop, self.crop, width / self.crop, height / self.crop, 0, 0)
        if mode != "crop":
            raise ParameterError("resize_mode", mode, "is not a resize mode; use 'crop' or 'squash'")
        # torchvision Resize(int): shorter side -> resize, long side int(resize * long / short).
        if width <= height:
            rw, rh = self.resize, int(self.resize * height / width)
        else:
            rw, rh = int(self.resize * width / height), self.resize
        # torchvision center_crop rounding (pads when the image is smaller than the crop).
        cx = int(round((rw - self.crop) / 2.0))
        cy = int(round((rh - self.crop) / 2.0))
        return Geometry(width, height, self.crop, self.crop, width / rw, height / rh, cx, cy)

    def resized_size(self, geometry: Geometry) -> tuple[int, int]:
        return (round(geometry.width / geometry.scale_x), round(geometry.height / geometry.scale_y))

    def to_array(self, image: Image.Image, mode: ResizeMode = "crop") -> tuple[np.ndarray, Geometry]:
        """Resize and crop an RGB PIL image; returns (float32 array [3, crop, crop] normalised, geometry)."""
        geo = self.geometry(image.width, image.height, mode)
        rw, rh = self.resized_size(geo)
        arr = resize_rgb(image, (rw, rh), self.interpolation).astype(np.float32)  # Pillow's pixels (see resize_rgb)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        out: np.ndarray = np.zeros((self.crop, self.crop, 3), dtype=np.float32)
        # Crop (torchvision pads with zeros when the resized image is smaller than the crop).
        sx0, sy0 = max(geo.crop_x, 0), max(geo.crop_y, 0)
        sx1, sy1 = min(geo.crop_x + self.crop, rw), min(geo.crop_y + self.crop, rh)
        out[sy0 - geo.crop_y : sy1 - geo.crop_y, sx0 - geo.crop_x : sx1 - geo.crop_x] = arr[sy0:sy1, sx0:sx1, :3]
        out = (out / 255.0 - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1)), geo

    def __call__(self, image: Image.Image, mode: ResizeMode = "crop") -> torch.Tensor:
        """Tensor [3, crop, crop] float32, normalised; the transform a DataLoader can use."""
        import torch

        return torch.from_numpy(self.to_array(image, mode)[0])


IMAGENET_PREPROCESS = Preprocess()
