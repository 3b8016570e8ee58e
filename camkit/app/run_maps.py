"""Maps of an evaluation run, recomputed on demand (run folders do not store maps) and cached.

For an image of the run this repeats the evaluation protocol with public camkit calls: the photo
squashed to the run's ``input_size`` (the model's own interpolation, mean and std), the ground-truth
class's map by the run's method, resized to the input as the evaluator does
(:func:`camkit.resample.resize_map_cubic`, OpenCV's INTER_CUBIC) and min-max normalised; then the
wsolevaluation boxes at every tau of the run's grid (:func:`camkit.localize.sweep_boxes`, V1 and V2).
The viewer draws them on the squashed photo, the coordinates the run's GT boxes are in.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from camkit.app.imaging import heat_layer, png_bytes
from camkit.app.rundir import RunDir
from camkit.errors import CamkitError, ModelError
from camkit.localize import normalize_scoremap, sweep_boxes
from camkit.resample import resize_map_cubic

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RunMaps", "ImageMaps", "load_run_model"]

CACHE_SIZE = 256


@dataclass
class ImageMaps:
    """One image of a run: the squashed photo, its GT-class heat layer (PNG bytes) and boxes per tau."""

    photo_png: bytes
    heat_png: bytes
    v1: list[list[list[int]]]  # [T][n][4], wsolevaluation boxes (n = 1 for V1)
    v2: list[list[list[int]]]
    map_min: float
    map_max: float


def load_run_model(run: RunDir, weights: str | None = None):
    """The run's model: ``weights`` when given, else the run's named weights, else the registry default."""
    from camkit.models import load_model

    name = run.model.get("name")
    if not name:
        raise CamkitError(f"{run.path}: run.json names no model; rerun camkit evaluate")
    if weights is not None:
        return load_model(name, weights)
    recorded = run.model.get("weights")
    if recorded and not str(recorded).startswith("embedded"):
        try:
            return load_model(name, str(recorded))
        except ModelError:
            pass  # a description rather than a loadable name: the registry default below
    return load_model(name)


class RunMaps:
    """Recompute and cache the maps of one run's images (thread-safe, one forward at a time).

    Args:
        run: the run folder.
        image_paths: image id -> photo path (from the dataset the run evaluated).
        model: a loaded model (None: :func:`load_run_model` on first use).
    """

    def __init__(self, run: RunDir, image_paths: dict[str, Path], model=None, weights: str | None = None) -> None:
        self.run = run
        self.image_paths = image_paths
        self._model = model
        self._weights = weights
        self._cache: OrderedDict[int, ImageMaps] = OrderedDict()
        self._lock = threading.Lock()
        self._records = {int(r["i"]): r for r in run.records}

    def model(self):
        if self._model is None:
            self._model = load_run_model(self.run, self._weights)
        return self._model

    def unit_map(self, i: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(squashed photo ``[S, S, 3]`` uint8, min-max map ``[S, S]`` float32, raw min, raw max) of record ``i``."""
        import torch

        from camkit.io import load_image

        rec = self._records.get(i)
        if rec is None or "error" in rec:
            raise CamkitError(f"image {i} has no result in {self.run.path}")
        path = self.image_paths.get(str(rec["id"]))
        if path is None:
            raise CamkitError(f"image {rec['id']!r} of {self.run.path} is not in the dataset given; pass the run's dataset folder as root")
        model = self.model()
        size = self.run.input_size
        img = load_image(path)
        prep = model.preprocess.with_input_size(size)
        x, _ = prep.to_array(img, "squash")
        xt = torch.from_numpy(np.ascontiguousarray(x))[None]
        gt = torch.tensor([[int(rec["gt"])]], dtype=torch.int64)
        method = self.run.method
        if method == "cam" and self.run.protocol.get("layer") is None and getattr(model, "cam_kind", "") != "gradient":
            from camkit.cam.engine import compute_cams

            raw = compute_cams(model, xt, gt).maps[0, 0]
        else:
            from camkit.cam.methods import compute_method_maps

            raw = compute_method_maps(model, xt, method, gt, self.run.protocol.get("layer")).maps[0, 0]
        raw_np = raw.float().cpu().numpy()
        up = resize_map_cubic(raw_np, size)  # the evaluator's resize, so the viewer shows the evaluated map
        photo = np.asarray(img.resize((size, size), resample=_pil_resample(prep)), dtype=np.uint8)
        return photo, normalize_scoremap(up), float(up.min()), float(up.max())

    def get(self, i: int) -> ImageMaps:
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
            photo, unit, lo, hi = self.unit_map(i)
            taus = self.run.taus
            v1 = [b.tolist() for b in sweep_boxes(unit, taus, False)]
            v2 = [b.tolist() for b in sweep_boxes(unit, taus, True)]
            item = ImageMaps(png_bytes(photo), png_bytes(heat_layer(unit, "minmax")), v1, v2, lo, hi)
            self._cache[i] = item
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return item


def _pil_resample(prep) -> Image.Resampling:
    from PIL import Image

    name = str(getattr(prep, "interpolation", "bilinear")).lower()
    filters = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
    return filters.get(name, Image.Resampling.BILINEAR)
