"""A torch Dataset over a LocDataset's images that never raises on a bad image.

Only the evaluator imports this module (it imports torch). A DataLoader worker that raises kills
the whole run, so an unreadable image becomes an item with ``image=None`` and a one-line ``error``,
and :func:`collate_localization` passes such items through next to the stacked good images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from camkit.datasets.sample import LocDataset
from camkit.errors import CamkitError


def _default_load(path: Path) -> Image.Image:
    # Imported at call time: camkit.io is written separately and must not be needed to import this.
    from camkit.io import load_image

    return load_image(path)


class LocalizationImages(torch.utils.data.Dataset):
    """Images of a LocDataset, loaded with ``load`` (default ``camkit.io.load_image``, RGB PIL) and
    turned into tensors by ``transform``.

    ``self[i]`` is a dict: ``index`` (i), ``image`` (the transform's tensor, or None on failure),
    ``error`` ("" or a one-line message), ``width``/``height`` (the loaded image's size in pixels;
    on failure the annotation's size, possibly None).
    """

    def __init__(
        self,
        dataset: LocDataset,
        transform: Callable[[Image.Image], torch.Tensor],
        load: Callable[[Path], Image.Image] | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.load = load if load is not None else _default_load

    def __len__(self) -> int:
        return len(self.dataset.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.dataset.samples[i]
        try:
            image = self.load(sample.image_path)
            width, height = image.size
            tensor = self.transform(image)
        except CamkitError as e:
            return self._failed(i, str(e))
        except Exception as e:  # noqa: BLE001 - a worker must survive any bad file or custom loader
            return self._failed(i, f"{sample.image_path}: {type(e).__name__}: {e}")
        return {"index": i, "image": tensor, "error": "", "width": width, "height": height}

    def _failed(self, i: int, message: str) -> dict[str, Any]:
        sample = self.dataset.samples[i]
        one_line = " ".join(message.split())
        return {"index": i, "image": None, "error": one_line, "width": sample.width, "height": sample.height}


def collate_localization(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good items of a batch and pass the failed ones through.

    Returns ``indices`` (int64 tensor [B_ok]), ``images`` (tensor [B_ok, ...] or None when every item
    failed), ``widths``/``heights`` (lists of ints, B_ok long, aligned with ``indices``) and ``failed``
    (list of ``(index, message)`` for the items whose image could not be read).
    """
    good = [item for item in batch if item["image"] is not None]
    return {
        "indices": torch.tensor([item["index"] for item in good], dtype=torch.int64),
        "images": torch.stack([item["image"] for item in good]) if good else None,
        "widths": [item["width"] for item in good],
        "heights": [item["height"] for item in good],
        "failed": [(item["index"], item["error"]) for item in batch if item["image"] is None],
    }
