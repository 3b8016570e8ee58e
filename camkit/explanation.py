"""``camkit.explain``: photo(s) in, classes + scores + CAMs + boxes out.

Conventions (everything an :class:`Explanation` holds):

- ``class_indices [k]`` int, ``labels`` (class names, or ``"class N"`` when the weights carry none),
  ``scores [k]`` softmax probabilities in [0, 1], ``logits [k]``.
- ``maps [k, H, W]`` float32: raw CAMs (logit units, bias excluded) on the original photo after EXIF
  orientation (H, W = its height and width). Outside ``seen_box`` (the part the network saw after the
  centre crop) they hold each map's minimum.
- ``feature_maps [k, h, w]``: the same at the network's feature resolution.
- ``boxes [k, 4]`` int64: x0, y0, x1, y1, inclusive pixels, original image coordinates, by the CVPR16
  rule (ReLU, divide by max, keep >= tau of max, box of the largest 8-connected component).

Accepted images (anything else raises a one-line :class:`~camkit.errors.ParameterError` naming the
argument): a path, a PIL image, a numpy array (``HxW``, ``HxWx3``, ``HxWx4``), the bytes of an encoded
image file (JPEG, PNG, ... as read from disk or a web response; decoded like a file), a torch tensor
``[3, H, W]`` / ``[1, H, W]`` or a batch ``[B, 3, H, W]`` (torchvision's channels-first convention,
uint8 or float in [0, 1]), or a list of these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from .cam.engine import compute_cams
from .cam.geometry import to_original, window_pixels
from .errors import ParameterError
from .io import load_image
from .io.explanation_folder import output_names
from .limits import check_maps_memory
from .malloc_tuning import apply_malloc_tuning
from .models.cam_model import CAMModel
from .normalize import Normalization, normalize_maps
from .preprocess import Geometry, ResizeMode

if TYPE_CHECKING:
    import torch

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray, "torch.Tensor"]

#: :meth:`Explanation.save` writes the overlay and the maps of at most this many classes (the first,
#: i.e. the highest-scoring or the first asked for); its JSON lists every class. A thousand maps of
#: one photo would take gigabytes on disk and a panorama of a thousand panels as the overlay.
MAX_SAVED_MAPS = 10

_ACCEPTED = "a path, PIL image, HxWx3 uint8 array, encoded image bytes, [3, H, W] tensor, or a list of them"


@dataclass
class Explanation:
    """CAMs, classes and boxes of one image (see the module docstring for shapes and conventions)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, EXIF-oriented
    path: str | None
    model_name: str
    class_indices: np.ndarray
    labels: list[str]
    scores: np.ndarray
    logits: np.ndarray
    maps: np.ndarray
    feature_maps: np.ndarray
    boxes: np.ndarray
    geometry: Geometry
    tau: float = 0.2
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def seen_box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel window of the original that the network saw."""
        return window_pixels(self.geometry)

    def normalized(self, method: Normalization = "relu_max") -> np.ndarray:
        """``maps`` normalised by name (``raw``, ``relu_max`` = CVPR16, ``minmax`` = wsolevaluation)."""
        return normalize_maps(self.maps, method)

    def to_dict(self) -> dict:
        """The JSON record: path, width, height, predictions (class_index, label, score, box)."""
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "predictions": [
                {
                    "class_index": int(c),
                    "label": lab,
                    "score": round(float(s), 6),
                    "box": [int(v) for v in b],
                }
                for c, lab, s, b in zip(self.class_indices, self.labels, self.scores, self.boxes, strict=True)
            ],
        }

    def overlay(self, which: int | None = None, alpha: float = 0.5) -> np.ndarray:
        """RGB uint8 overlay: heatmap, box, label and score; ``which=None`` puts all k side by side."""
        from .viz import overlay, side_by_side

        seen = self.seen_box
        full = seen == (0, 0, self.width - 1, self.height - 1)

        def panel(i: int) -> np.ndarray:
            caption = f"{self.labels[i]} {self.scores[i]:.2f}"
            return overlay(self.image, self.maps[i], self.boxes[i], caption, alpha, None if full else seen)

        if which is not None:
            return panel(which)
        return side_by_side([panel(i) for i in range(len(self.class_indices))])

    @property
    def saved_maps(self) -> int:
        """How many classes :meth:`save` writes maps and overlay panels for (``MAX_SAVED_MAPS`` at most)."""
        return min(len(self.class_indices), MAX_SAVED_MAPS)

    def save(self, out_dir: str | Path, stem: str | None = None, model: str | None = None) -> dict[str, Path]:
        """Write ``<stem>_cam.png`` (overlay), ``<stem>_maps.npy`` (raw maps ``[n, H, W]``) and ``<stem>.json``.

        The overlay and the maps cover the first ``n = saved_maps`` classes (at most ``MAX_SAVED_MAPS``);
        the JSON lists every class and ``saved_maps``.
        """
        from .viz import save_png, side_by_side

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or (Path(self.path).stem if self.path else "image")
        paths = {role: out / name for role, name in output_names(stem).items()}
        n = self.saved_maps
        save_png(paths["overlay"], side_by_side([self.overlay(i) for i in range(n)]) if n else self.image)
        np.save(paths["maps"], self.maps[:n].astype(np.float32))
        doc = {"model": model or self.model_name, "images": [dict(self.to_dict(), saved_maps=n)]}
        paths["json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return paths


def _is_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _box_in_window(cam: np.ndarray, window: tuple[int, int, int, int], tau: float) -> np.ndarray:
    from .localize import cvpr16_box

    x0, y0, x1, y1 = window
    b = np.asarray(cvpr16_box(cam[y0 : y1 + 1, x0 : x1 + 1], tau), dtype=np.int64)
    return b + np.array([x0, y0, x0, y0], dtype=np.int64)


def _labels(model, idx: Iterable[int]) -> list[str]:
    cats = getattr(model, "categories", None)
    return [cats[i] if cats and 0 <= i < len(cats) else f"class {i}" for i in idx]


def explain_batch(
    model,
    images: Sequence[Image.Image],
    paths: Sequence[str | None] | None = None,
    classes=5,
    resize_mode: ResizeMode = "crop",
    interpolation: str = "bicubic",
    tau: float = 0.2,
    method: str | None = None,
    layer: str | Sequence[str] | None = None,
    method_batch_size: int = 32,
    *,
    smooth: str | None = None,
    seed: int = 0,
) -> list[Explanation]:
    """Explain already-loaded RGB PIL images in one forward pass (see :func:`explain`)."""
    import torch


    apply_malloc_tuning()
    if isinstance(classes, int) and not isinstance(classes, bool):
        check_topk(model, classes)
    for im in images:
        check_maps_memory(_maps_per_image(classes), im.width, im.height, param="topk" if isinstance(classes, int) else "classes")
    arrays, geos = zip(*(model.preprocess.to_array(im, resize_mode) for im in images), strict=True)
    x = torch.from_numpy(np.stack(arrays))
    from .cam.methods import compute_method_maps, default_method

    method = method or default_method(model, layer)
    if method == "cam" and layer is None and smooth is None:
        res = compute_cams(model, x, classes)
    else:
        res = compute_method_maps(model, x, method, classes, layer, method_batch_size, seed=seed, smooth=smooth)
    feats = res.maps.float().cpu().numpy()
    out = []
    for i, im in enumerate(images):
        idx = res.class_idx[i].cpu().numpy()
        maps = to_original(feats[i], geos[i], interpolation)
        window = window_pixels(geos[i])
        boxes = np.stack([_box_in_window(m, window, tau) for m in maps]) if len(maps) else np.zeros((0, 4), np.int64)
        out.append(
            Explanation(
                image=np.asarray(im, dtype=np.uint8),
                path=None if paths is None else paths[i],
                model_name=getattr(model, "name", type(model).__name__),
                class_indices=idx.astype(np.int64),
                labels=_labels(model, idx),
                scores=res.scores[i].float().cpu().numpy(),
                logits=res.logits[i, res.class_idx[i]].float().cpu().numpy(),
                maps=maps,
                feature_maps=feats[i],
                boxes=boxes,
                geometry=geos[i],
                tau=tau,
                extra={"method": getattr(res, "method", "cam"), "layer": getattr(res, "layer", "features")},
            )
        )
    return out


def _maps_per_image(classes) -> int:
    """Maps per image for a class spec: ``topk``, one list for all images, or one list per image."""
    if isinstance(classes, (int, np.integer)):
        return int(classes)
    items = list(classes) if classes is not None else []
    if items and all(isinstance(c, (list, tuple)) for c in items):
        return max(len(c) for c in items)
    return len(items)


def check_topk(model, topk: int) -> None:
    """Refuse ``topk`` below 1 or above the model's number of classes (never clamped silently)."""
    n = getattr(model, "num_classes", None)
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ParameterError("topk", topk, "must be a positive integer (the number of classes to explain)")
    if n is not None and topk > n:
        raise ParameterError("topk", topk, f"is more than the model's {n} classes; use {n} or less")


def _describe(obj) -> str:
    if _is_tensor(obj):
        return f"a {obj.dtype} tensor of shape {list(obj.shape)}"
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array of shape {list(obj.shape)}"
    return repr(obj) if obj is None or isinstance(obj, (int, float)) else f"a {type(obj).__name__}"


def _tensor_to_hwc(t, param: str) -> np.ndarray:
    """A channels-first image tensor ``[C, H, W]`` (C in 1, 3, 4) as an ``HxWxC`` numpy array."""
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        hint = "; it looks channels-last: pass t.permute(2, 0, 1)" if t.ndim == 3 and t.shape[-1] in (1, 3, 4) else ""
        raise ParameterError(param, _Shown(_describe(t)), f"is not an image tensor: expected [3, H, W] or [B, 3, H, W] (channels first){hint}")
    return np.moveaxis(t.detach().cpu().numpy(), 0, -1)


class _Shown:
    """A value shown in a message by a description instead of its repr (a tensor's shape, not its data)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _as_image_items(images, param: str = "images") -> tuple[list, bool]:
    """(loadable items, single?) from what :func:`explain` accepts; one-line ParameterError otherwise."""
    if _is_tensor(images):
        if images.ndim == 4:
            return [_tensor_to_hwc(t, param) for t in images], False
        return [_tensor_to_hwc(images, param)], True
    if isinstance(images, (str, Path, Image.Image, np.ndarray, bytes, bytearray, memoryview)):
        return [_one_item(images, param)], True
    if isinstance(images, (list, tuple)):
        if not images:
            raise ParameterError(param, _Shown("[]"), f"is empty; pass {_ACCEPTED}")
        return [_one_item(it, f"{param}[{i}]") for i, it in enumerate(images)], False
    raise ParameterError(param, _Shown(_describe(images)), f"is not an image; pass {_ACCEPTED}")


def _one_item(obj, param: str):
    if _is_tensor(obj):
        return _tensor_to_hwc(obj, param)
    if isinstance(obj, (str, Path, Image.Image, np.ndarray)):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(obj), param)
    raise ParameterError(param, _Shown(_describe(obj)), f"is not an image; pass {_ACCEPTED}")


def _decode_bytes(data: bytes, param: str) -> Image.Image:
    """Encoded image bytes (the content of a JPEG/PNG/... file) -> a lazily opened PIL image."""
    import io

    from PIL import UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise ParameterError(param, _Shown(f"{len(data)} bytes"), "are not an encoded image (JPEG, PNG, ...); pass the bytes of an image file, a path or an array") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ParameterError(param, _Shown(f"{len(data)} bytes"), f"cannot be decoded ({' '.join(str(e).split())}); pass the bytes of a complete image file") from None
    return img


def explain(
    images: ImageInput | Sequence[ImageInput],
    model: str | CAMModel | torch.nn.Module | None = None,
    *,
    weights: str | None = None,
    topk: int = 5,
    classes: Sequence[int | str] | Sequence[Sequence[int | str]] | None = None,
    resize_mode: ResizeMode = "crop",
    interpolation: str = "bicubic",
    tau: float = 0.2,
    batch_size: int = 16,
    method: str | None = None,
    layer: str | Sequence[str] | None = None,
    smooth: str | None = None,
    seed: int = 0,
) -> Explanation | list[Explanation]:
    """Explain one image or many.

    Args:
        images: a path, PIL image, ``[H, W, 3]`` uint8 array, the bytes of an encoded image file, or an
            image tensor in torchvision's convention (``[3, H, W]`` uint8 or float in [0, 1], as
            ``torchvision.io.decode_image`` gives), or a list of them / a ``[B, 3, H, W]`` tensor (a list
            or batch returns a list of :class:`Explanation`, one image returns one).
        model: a registry name, a loaded :class:`CAMModel`, or None for the embedded default.
        weights: weights for a model given by name (see :func:`camkit.load_model`).
        topk: explain the k highest-scoring classes, 1 to the model's number of classes (ignored when
            ``classes`` is given).
        classes: class ids or names for every image, or one list per image.
        resize_mode: ``"crop"`` (the weights' eval transform; the map covers the crop window) or
            ``"squash"`` (whole image resized to the input square, the WSOL protocol).
        interpolation: how maps are brought to the photo's size, ``"bicubic"`` or ``"bilinear"``.
        tau: CVPR16 box threshold as a fraction of the map's maximum.
        batch_size: images per forward pass, and Score-CAM's masked inputs per forward pass (as the
            CLI's ``--batch-size``).
        method: ``"cam"`` (default where exact), or ``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``,
            ``"layercam"``, ``"hirescam"``, ``"scorecam"``, ``"eigencam"`` (see :mod:`camkit.cam.methods`);
            models whose head is not pool+linear default to Grad-CAM.
        layer: target layer for the non-CAM methods (module name, e.g. ``"layer4"``), or a list of
            layers whose maps are fused as the method's paper says; None = automatic.
        smooth: ``"aug"`` (test-time flips x scales, each map mapped back exactly, averaged) or
            ``"eigen"`` (first principal component of the weighted activations); None = off.
        seed: seeds the methods that draw noise or random maps (SS-CAM, IS-CAM, Smooth Grad-CAM++, RandomCAM).

    Raises:
        ParameterError: ``images`` of a kind or shape not listed above, ``topk`` outside 1..classes,
            ``batch_size`` < 1, or maps that cannot fit in memory.
        ImageError: a file that is missing, unreadable or not an image.

    Example:
        >>> import camkit, skimage.data
        >>> e = camkit.explain(skimage.data.chelsea(), topk=3)
        >>> e.labels[0] in ("tiger cat", "Egyptian cat", "tabby")
        True
    """
    from .models import load_model

    items, single = _as_image_items(images)
    if resize_mode not in ("crop", "squash"):
        raise ParameterError("resize_mode", resize_mode, "is not a resize mode; use 'crop' or 'squash'")
    if interpolation not in ("bicubic", "bilinear"):
        raise ParameterError("interpolation", interpolation, "is not a map interpolation; use 'bicubic' or 'bilinear'")
    if not 0.0 <= tau <= 1.0:
        raise ParameterError("tau", tau, "is outside [0, 1]; it is a fraction of each map's maximum (e.g. 0.2)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", batch_size, "must be a positive integer")
    m = load_model(model, weights) if model is None or isinstance(model, str) else model
    if classes is None:
        check_topk(m, topk)
    spec = topk if classes is None else classes
    lists = [c for c in classes if isinstance(c, (list, tuple))] if classes is not None else []
    per_image = classes is not None and bool(lists) and len(lists) == len(classes)  # one class list per image
    results: list[Explanation] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pil = [load_image(it) for it in chunk]
        paths = [str(it) if isinstance(it, (str, Path)) else None for it in chunk]
        chunk_spec = lists[start : start + batch_size] if per_image else spec
        results.extend(explain_batch(m, pil, paths, chunk_spec, resize_mode, interpolation, tau, method, layer, batch_size,
                                     smooth=smooth, seed=seed))
    return results[0] if single else results
