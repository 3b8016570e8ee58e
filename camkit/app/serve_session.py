"""What ``camkit serve`` keeps between requests: photos, loaded models, explanations and their boxes.

No web framework here: :mod:`camkit.app.serve_app` turns these calls into HTTP endpoints, and the
tests call them directly too. Everything is bounded: at most :data:`MAX_PHOTOS` photos and
:data:`MAX_RESULTS` explanations are kept (least recently used dropped first), one model per name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camkit.app.imaging import encode_for_page, heat_layer, png_bytes
from camkit.app.safe_paths import resolve_inside
from camkit.app.tau_boxes import TAUS, cvpr16_boxes_over_taus, tau_index, wsol_boxes_over_taus, wsol_empty_over_taus
from camkit.choices import one_of
from camkit.errors import ImageError, ParameterError
from camkit.normalize import Normalization
from camkit.preprocess import resize_mode_of

__all__ = ["ServeSession", "Photo", "Result", "MAX_UPLOAD_BYTES"]

MAX_PHOTOS = 32
MAX_RESULTS = 64
#: Uploads larger than this are refused before decoding (the pixel limit of camkit.io applies too).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
HEAT_NORMALIZATIONS: tuple[Normalization, ...] = ("relu_max", "minmax")
METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam")


@dataclass
class Photo:
    """A decoded upright RGB photo (``pixels [H, W, 3]`` uint8) and the name it came with."""

    photo_id: str
    name: str
    pixels: np.ndarray
    page_bytes: bytes
    page_mime: str


@dataclass
class Result:
    """One explanation plus, per explained class, its boxes at every slider threshold (filled lazily)."""

    result_id: str
    photo: Photo
    explanation: Any  # camkit.explanation.Explanation
    model_name: str
    weights: str | None
    method: str
    resize_mode: str
    per_class: dict[int, dict] = field(default_factory=dict)


def _slug(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "image"
    return stem[:80]


class ServeSession:
    """State of one ``camkit serve`` process.

    Args:
        default_model: registry name shown first (None: the embedded ``efficientnet_lite0``).
        weights: weights for ``default_model`` (as ``camkit explain --weights``).
        folder: the only folder whose images may be opened by path (None: uploads only).
    """

    def __init__(self, default_model: str | None = None, weights: str | None = None, folder: str | Path | None = None) -> None:
        self.default_model = default_model or "efficientnet_lite0"
        self.default_weights = weights
        self.folder = Path(folder).resolve() if folder is not None else None
        self._models: dict[tuple[str, str | None], Any] = {}
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.RLock()  # one forward at a time: torch already uses every core
        self._tmp = tempfile.TemporaryDirectory(prefix="camkit-serve-")

    def close(self) -> None:
        self._tmp.cleanup()

    # ---------------------------------------------------------------- models
    def model(self, name: str | None = None):
        """The loaded model ``name`` (the default with its weights when None), loaded once."""
        from camkit.models import load_model

        name = name or self.default_model
        weights = self.default_weights if name == self.default_model else None
        with self._lock:
            key = (name, weights)
            if key not in self._models:
                self._models[key] = load_model(name, weights)
            return self._models[key]

    def config(self) -> dict:
        """What the page needs to build its controls."""
        from camkit.models import list_models

        return {
            "default_model": self.default_model,
            "models": [{"name": s.name, "cam_kind": s.cam_kind, "description": s.description} for s in list_models()],
            "methods": list(METHODS),
            "taus": TAUS.tolist(),
            "folder": str(self.folder) if self.folder is not None else None,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
        }

    def class_names(self, model: str | None = None) -> list[str]:
        m = self.model(model)
        cats = getattr(m, "categories", None)
        return list(cats) if cats else [f"class {i}" for i in range(int(m.num_classes))]

    # ---------------------------------------------------------------- photos
    def _keep_photo(self, photo: Photo) -> Photo:
        with self._lock:
            self._photos[photo.photo_id] = photo
            self._photos.move_to_end(photo.photo_id)
            while len(self._photos) > MAX_PHOTOS:
                self._photos.popitem(last=False)
        return photo

    def add_upload(self, filename: str, data: bytes) -> Photo:
        """Decode uploaded bytes as ``camkit explain`` decodes a file; ImageError messages name ``filename``."""
        from camkit.io import load_image

        name = Path(filename or "upload").name or "upload"
        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name}: file too large ({len(data) / 2**20:.0f} MiB, limit {MAX_UPLOAD_BYTES // 2**20} MiB); downscale or re-export the image")
        digest = hashlib.sha1(data).hexdigest()[:16]
        slot = Path(self._tmp.name) / digest
        slot.mkdir(exist_ok=True)
        path = slot / _slug(name)
        path.write_bytes(data)
        try:
            img = load_image(path)
        except ImageError as e:
            # the same one-line message as the CLI, naming the file as the user knows it
            raise ImageError(str(e).replace(str(path), name)) from None
        finally:
            path.unlink(missing_ok=True)
        return self._photo_from(img, name, digest)

    def add_folder_image(self, relative: str) -> Photo:
        """Open ``relative`` inside the served folder (refuses paths outside it)."""
        from camkit.io import load_image

        if self.folder is None:
            raise ParameterError("folder", None, "is not set: images open by path only in a session that serves a folder")
        path = resolve_inside(self.folder, relative)
        try:
            img = load_image(path)
        except ImageError as e:
            raise ImageError(str(e).replace(str(path), relative)) from None
        st = path.stat()
        digest = hashlib.sha1(f"{path}\t{st.st_size}\t{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return self._photo_from(img, relative, digest)

    def folder_images(self) -> list[str]:
        """Images under the served folder, as ``/``-separated paths relative to it (sorted)."""
        from camkit.io import is_image_path

        if self.folder is None:
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if is_image_path(p):
                    try:
                        resolve_inside(self.folder, p.relative_to(self.folder).as_posix())
                    except Exception:
                        continue  # symlinks leading out are not listed either
                    out.append(p.relative_to(self.folder).as_posix())
                    if len(out) >= 5000:
                        return out
        return out

    def _photo_from(self, img, name: str, digest: str) -> Photo:
        pixels = np.asarray(img, dtype=np.uint8)
        data, mime = encode_for_page(pixels)
        return self._keep_photo(Photo(photo_id=digest, name=name, pixels=pixels, page_bytes=data, page_mime=mime))

    def photo(self, photo_id: str) -> Photo:
        with self._lock:
            if photo_id not in self._photos:
                raise ParameterError("photo_id", photo_id, "is not loaded (the server keeps the latest photos only); upload it again")
            self._photos.move_to_end(photo_id)
            return self._photos[photo_id]

    # ---------------------------------------------------------------- explanations
    def explain(
        self,
        photo_id: str,
        model: str | None = None,
        method: str | None = None,
        topk: int = 5,
        classes: list[str] | None = None,
        resize_mode: str = "crop",
    ) -> Result:
        """Explain a loaded photo as ``camkit explain`` would (same model, method, classes, resize mode)."""
        from camkit.cam.engine import resolve_class
        from camkit.cam.methods import default_method
        from camkit.explanation import explain_batch
        from camkit.io import load_image

        photo = self.photo(photo_id)
        mode = resize_mode_of(resize_mode)
        if not 1 <= int(topk) <= 1000:
            raise ParameterError("topk", topk, "must be between 1 and 1000")
        if method is not None and method not in METHODS:
            raise ParameterError("method", method, f"is not one of {', '.join(METHODS)}")
        m = self.model(model)
        spec: object = int(topk)
        if classes:
            spec = [resolve_class(c.strip() if isinstance(c, str) else c, m.categories, m.num_classes) for c in classes]
        with self._lock:
            exp = explain_batch(m, [load_image(photo.pixels)], [photo.name], spec, mode, "bicubic", 0.2,
                                method, None)[0]
        used = method or default_method(m)  # the method explain_batch chose
        key = json.dumps([photo_id, m.name, self.default_weights if m.name == self.default_model else None, used,
                          resize_mode, [int(c) for c in exp.class_indices]])
        result = Result(hashlib.sha1(key.encode()).hexdigest()[:16], photo, exp, m.name,
                        getattr(m, "weights_name", None), used, resize_mode)
        with self._lock:
            self._results[result.result_id] = result
            self._results.move_to_end(result.result_id)
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
        return result

    def result(self, result_id: str) -> Result:
        with self._lock:
            if result_id not in self._results:
                raise ParameterError("result_id", result_id, "is not kept any more; explain the photo again")
            self._results.move_to_end(result_id)
            return self._results[result_id]

    def class_view(self, result_id: str, j: int) -> dict:
        """Boxes at every threshold for class ``j`` of a result (both conventions) and its value range."""
        r = self.result(result_id)
        exp = r.explanation
        if not 0 <= j < len(exp.class_indices):
            raise ParameterError("j", j, f"must be a class position 0-{len(exp.class_indices) - 1}")
        if j not in r.per_class:
            cam = exp.maps[j]
            win = exp.seen_box
            x0, y0, x1, y1 = win
            part = cam[y0 : y1 + 1, x0 : x1 + 1]
            r.per_class[j] = {
                "j": j,
                "class_index": int(exp.class_indices[j]),
                "label": exp.labels[j],
                "score": float(exp.scores[j]),
                "logit": float(exp.logits[j]),
                "map_min": float(part.min()),
                "map_max": float(part.max()),
                "taus": TAUS.tolist(),
                "cvpr16": cvpr16_boxes_over_taus(cam, win).tolist(),
                "wsol_v1": [b.tolist() for b in wsol_boxes_over_taus(cam, win, False)],
                "wsol_v2": [b.tolist() for b in wsol_boxes_over_taus(cam, win, True)],
                "wsol_empty": wsol_empty_over_taus(cam, win),
            }
        return r.per_class[j]

    def heat_png(self, result_id: str, j: int, normalization: str) -> bytes:
        norm = one_of("normalization", normalization, HEAT_NORMALIZATIONS, "a heat-map normalisation")
        r = self.result(result_id)
        exp = r.explanation
        if not 0 <= j < len(exp.class_indices):
            raise ParameterError("j", j, f"must be a class position 0-{len(exp.class_indices) - 1}")
        return png_bytes(heat_layer(exp.maps[j], norm, exp.seen_box))

    def result_doc(self, result: Result) -> dict:
        """The page's view of a result: the top-k table (boxes at tau 0.2 as the CLI prints them)."""
        exp = result.explanation
        d = exp.to_dict()
        d.update({
            "result_id": result.result_id,
            "photo_id": result.photo.photo_id,
            "name": result.photo.name,
            "model": result.model_name,
            "weights": result.weights,
            "method": result.method,
            "resize_mode": result.resize_mode,
            "seen_box": list(exp.seen_box),
        })
        return d

    def download(self, result_id: str, kind: str, tau: float = 0.2) -> tuple[bytes, str, str]:
        """The file ``camkit explain --tau tau --out`` writes for this photo: ``json``, ``png`` or ``npy``.

        Returns (bytes, file name, MIME type). Boxes are the CVPR16 boxes at ``tau``.
        """
        if kind not in ("json", "png", "npy"):
            raise ParameterError("kind", kind, "must be 'json', 'png' or 'npy'")
        if not 0.0 <= float(tau) <= 1.0:
            raise ParameterError("tau", tau, "must be in [0, 1]")
        r = self.result(result_id)
        exp = r.explanation
        i = tau_index(tau)
        boxes = np.stack([np.asarray(self.class_view(result_id, j)["cvpr16"][i], dtype=np.int64)
                          for j in range(len(exp.class_indices))]) if len(exp.class_indices) else exp.boxes
        at_tau = dataclasses.replace(exp, boxes=boxes, tau=float(TAUS[i]))
        stem = _slug(Path(r.photo.name).stem)
        out = Path(self._tmp.name) / "downloads" / result_id / f"{i:03d}"
        paths = at_tau.save(out, stem, model=r.model_name)
        key = {"json": "json", "png": "overlay", "npy": "maps"}[kind]
        mime = {"json": "application/json", "png": "image/png", "npy": "application/octet-stream"}[kind]
        return paths[key].read_bytes(), paths[key].name, mime
