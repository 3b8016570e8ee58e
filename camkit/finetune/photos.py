"""A small real-photo classification + localization set built from scikit-image's sample photos.

For trying ``camkit finetune`` offline (the notebook, the tests, the benchmark): five classes, each
one object cut from a real photo with a box annotated by hand on that photo, pasted at a random
size and place onto a random crop of a real texture or sky photo, with random flips and colour
jitter. The pasted object's box is known exactly, so CAM boxes can be scored by IoU.

Hand-annotated boxes (x0, y0, x1, y1, inclusive pixels, on the scikit-image photo; checked by
drawing them on the photos): the cat's head and body in ``chelsea`` (451x300), the cup with saucer
and spoon in ``coffee`` (600x400), the astronaut in ``astronaut`` (512x512), the rocket in ``rocket``
(640x427), the motorcycle in the left ``stereo_motorcycle`` view (741x500).

Layout written (an ImageFolder plus a camkit CSV of boxes):
``root/train/<class>/NNN.png``, ``root/val/<class>/NNN.png``, ``root/train.csv`` and
``root/val.csv`` (``image_path,class_index,x1,y1,x2,y2``, paths relative to ``root``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# class name -> (scikit-image loader, hand-annotated box on that photo). Sorted: ImageFolder order.
OBJECTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "cat": ("chelsea", (0, 0, 392, 299)),
    "cup": ("coffee", (75, 18, 480, 390)),
    "motorcycle": ("stereo_motorcycle", (95, 86, 685, 452)),
    "person": ("astronaut", (18, 14, 365, 511)),
    "rocket": ("rocket", (296, 125, 346, 412)),
}
# Backgrounds: textures (grey, tinted) and a colour photo with no object of the five classes.
BACKGROUNDS = ("grass", "gravel", "brick", "hubble_deep_field")
_TINTS = {"grass": (0.55, 0.85, 0.45), "gravel": (0.9, 0.85, 0.75), "brick": (0.95, 0.6, 0.5)}


@dataclass
class PhotoSet:
    root: Path
    class_names: list[str]
    train_boxes: Path
    val_boxes: Path


def _photo(name: str) -> np.ndarray:
    import skimage.data as data

    if name == "stereo_motorcycle":
        return data.stereo_motorcycle()[0]
    img = getattr(data, name)()
    if img.ndim == 2:
        tint = np.asarray(_TINTS.get(name, (1.0, 1.0, 1.0)))
        img = np.clip(img[:, :, None] * tint[None, None, :], 0, 255).astype(np.uint8)
    return img[:, :, :3]


def _background(rng: np.random.Generator, photos: dict[str, np.ndarray], size: int) -> Image.Image:
    bg = photos[BACKGROUNDS[rng.integers(len(BACKGROUNDS))]]
    h, w = bg.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return Image.fromarray(bg[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)


def _jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enh(img).enhance(float(rng.uniform(0.75, 1.25)))
    return img


def composite(
    cls: str, rng: np.random.Generator, photos: dict[str, np.ndarray], size: int = 192, scale=(0.45, 0.8)
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """One ``size x size`` RGB image of class ``cls`` and the pasted object's inclusive box."""
    src, (x0, y0, x1, y1) = OBJECTS[cls]
    obj = Image.fromarray(photos[src][y0 : y1 + 1, x0 : x1 + 1])
    long_side = rng.uniform(*scale) * size
    f = long_side / max(obj.size)
    w, h = max(8, round(obj.width * f)), max(8, round(obj.height * f))
    obj = obj.resize((w, h), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    obj = _jitter(obj, rng)
    canvas = _jitter(_background(rng, photos, size), rng)
    px, py = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    canvas.paste(obj, (px, py))
    return canvas, (px, py, px + w - 1, py + h - 1)


def make_photo_dataset(root: str | Path, train_per_class: int = 12, val_per_class: int = 4, size: int = 192, seed: int = 0) -> PhotoSet:
    """Write the photo set under ``root`` (see the module doc) and return where everything is."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    photos = {name: _photo(name) for name in {src for src, _ in OBJECTS.values()} | set(BACKGROUNDS)}
    names = sorted(OBJECTS)
    csv_paths = {}
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        rows = []
        for ci, cls in enumerate(names):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img, box = composite(cls, rng, photos, size)
                rel = f"{split}/{cls}/{i:03d}.png"
                img.save(root / rel)
                rows.append([rel, ci, *box])
        csv_paths[split] = root / f"{split}.csv"
        with open(csv_paths[split], "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image_path", "class_index", "x1", "y1", "x2", "y2"])
            w.writerows(rows)
    return PhotoSet(root, names, csv_paths["train"], csv_paths["val"])
