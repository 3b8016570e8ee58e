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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, Union

import numpy as np
from PIL import Image

from .cam.geometry import to_original, window_pixels
from .models.cam_model import CAMModel
from .normalize import Normalization, normalize_maps
from .preprocess import Geometry, ResizeMode

if TYPE_CHECKING:
    import torch

ImageInput = Union[str, Path, Image.Image, np.ndarray]


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
                for c, lab, s, b in zip(self.class_indices, self.labels, self.scores, self.boxes)
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

    def save(self, out_dir: str | Path, stem: str | None = None, model: str | None = None) -> dict[str, Path]:
        """Write ``<stem>_cam.png`` (overlay), ``<stem>_maps.npy`` (raw maps [k,H,W]) and ``<stem>.json``."""
        from .viz import save_png

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or (Path(self.path).stem if self.path else "image")
        paths = {"overlay": out / f"{stem}_cam.png", "maps": out / f"{stem}_maps.npy", "json": out / f"{stem}.json"}
        save_png(paths["overlay"], self.overlay())
        np.save(paths["maps"], self.maps.astype(np.float32))
        doc = {"model": model or self.model_name, "images": [self.to_dict()]}
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
    layer: str | None = None,
    method_batch_size: int = 32,
) -> list[Explanation]:
    """Explain already-loaded RGB PIL images in one forward pass (see :func:`explain`)."""
    import torch

    from .cam.engine import compute_cams

    arrays, geos = zip(*(model.preprocess.to_array(im, resize_mode) for im in images))
    x = torch.from_numpy(np.stack(arrays))
    if method is None and layer is None and isinstance(model, CAMModel) and model.cam_kind != "gradient":
        method = "cam"
    if method == "cam" and layer is None:
        res = compute_cams(model, x, classes)
    else:
        from .cam.methods import compute_method_maps, default_method

        res = compute_method_maps(model, x, method or default_method(model), classes, layer, method_batch_size)
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


def explain(
    images: ImageInput | Sequence[ImageInput],
    model: "str | CAMModel | torch.nn.Module | None" = None,
    *,
    weights: str | None = None,
    topk: int = 5,
    classes: Sequence[int | str] | Sequence[Sequence[int | str]] | None = None,
    resize_mode: ResizeMode = "crop",
    interpolation: str = "bicubic",
    tau: float = 0.2,
    batch_size: int = 16,
    method: str | None = None,
    layer: str | None = None,
) -> Explanation | list[Explanation]:
    """Explain one image or many.

    Args:
        images: a path, PIL image, ``[H, W, 3]`` uint8 array, or an image tensor in torchvision's
            convention (``[3, H, W]`` uint8 or float in [0, 1], as ``torchvision.io.decode_image`` gives),
            or a list of them / a ``[B, 3, H, W]`` tensor (a list or batch returns a list of
            :class:`Explanation`, one image returns one).
        model: a registry name, a loaded :class:`CAMModel`, or None for the embedded default.
        weights: weights for a model given by name (see :func:`camkit.load_model`).
        topk: explain the k highest-scoring classes (ignored when ``classes`` is given).
        classes: class ids or names for every image, or one list per image.
        resize_mode: ``"crop"`` (the weights' eval transform; the map covers the crop window) or
            ``"squash"`` (whole image resized to the input square, the WSOL protocol).
        interpolation: how maps are brought to the photo's size, ``"bicubic"`` or ``"bilinear"``.
        tau: CVPR16 box threshold as a fraction of the map's maximum.
        batch_size: images per forward pass.
        method: ``"cam"`` (default where exact), or ``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``,
            ``"layercam"``, ``"hirescam"``, ``"scorecam"``, ``"eigencam"`` (see :mod:`camkit.cam.methods`);
            models whose head is not pool+linear default to Grad-CAM.
        layer: target layer for the non-CAM methods (module name, e.g. ``"layer4"``); None = automatic.

    Example:
        >>> import camkit, skimage.data
        >>> e = camkit.explain(skimage.data.chelsea(), topk=3)
        >>> e.labels[0] in ("tiger cat", "Egyptian cat", "tabby")
        True
    """
    from .io import load_image
    from .models import load_model

    if _is_tensor(images):
        # torchvision convention: [3, H, W] or [B, 3, H, W], uint8 or float in [0, 1] (e.g. io.decode_image)
        arr = images.detach().cpu().numpy()
        single = arr.ndim == 3
        items = [np.moveaxis(a, 0, -1) for a in (arr[None] if single else arr)]
    else:
        single = isinstance(images, (str, Path, Image.Image, np.ndarray))
        items = [images] if single else [np.moveaxis(it.detach().cpu().numpy(), 0, -1) if _is_tensor(it) else it for it in images]
    m = load_model(model, weights) if model is None or isinstance(model, str) else model
    spec = topk if classes is None else classes
    per_image = spec is not None and not isinstance(spec, int) and len(spec) > 0 and all(isinstance(c, (list, tuple)) for c in spec)
    results: list[Explanation] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pil = [load_image(it) for it in chunk]
        paths = [str(it) if isinstance(it, (str, Path)) else None for it in chunk]
        chunk_spec = spec[start : start + batch_size] if per_image else spec
        results.extend(explain_batch(m, pil, paths, chunk_spec, resize_mode, interpolation, tau, method, layer))
    return results[0] if single else results
