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
    turned into tensors by ``transform``; with ``load_mask`` also each sample's ground-truth mask
    (e.g. :class:`camkit.datasets.masks.MaskLoader`), read in the worker like the image.

    ``self[i]`` is a dict: ``index`` (i), ``image`` (the transform's tensor, or None on failure),
    ``error`` ("" or a one-line message), ``width``/``height`` (the loaded image's size in pixels;
    on failure the annotation's size, possibly None), ``mask`` (``load_mask(sample)``, or None
    without ``load_mask`` or on failure). A mask that cannot be read fails the item like a bad image.
    """

    def __init__(
        self,
        dataset: LocDataset,
        transform: Callable[[Image.Image], torch.Tensor],
        load: Callable[[Path], Image.Image] | None = None,
        load_mask: Callable[[Any], Any] | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.load = load if load is not None else _default_load
        self.load_mask = load_mask

    def __len__(self) -> int:
        return len(self.dataset.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.read(i)

    def read(self, i: int, out: torch.Tensor | None = None) -> dict[str, Any]:
        """``self[i]``; with ``out``, the transform writes the image into that tensor (it must take
        ``transform(image, out)``, as :class:`camkit.evaluate.loop.SquashTransform` does) and the item's
        ``image`` is ``out``: a batch read this way into the rows of one tensor needs no stacking."""
        sample = self.dataset.samples[i]
        try:
            image = self.load(sample.image_path)
            width, height = image.size
            tensor = self.transform(image) if out is None else self.transform(image, out)  # type: ignore[call-arg]
        except CamkitError as e:
            return self._failed(i, str(e))
        except Exception as e:  # noqa: BLE001 - a worker must survive any bad file or custom loader
            return self._failed(i, f"{sample.image_path}: {type(e).__name__}: {e}")
        mask = None
        if self.load_mask is not None:
            try:
                mask = self.load_mask(sample)
            except CamkitError as e:
                return self._failed(i, str(e))
            except Exception as e:  # noqa: BLE001 - as above, for mask files
                return self._failed(i, f"{sample.image_id} mask: {type(e).__name__}: {e}")
        return {"index": i, "image": tensor, "error": "", "width": width, "height": height, "mask": mask}

    def _failed(self, i: int, message: str) -> dict[str, Any]:
        sample = self.dataset.samples[i]
        one_line = " ".join(message.split())
        return {"index": i, "image": None, "error": one_line, "width": sample.width, "height": sample.height, "mask": None}


def collate_localization(batch: Sequence[dict[str, Any]], images: torch.Tensor | None = None,
                         channels_last: bool = False) -> dict[str, Any]:
    """Stack the good items of a batch and pass the failed ones through.

    Returns ``indices`` (int64 tensor [B_ok]), ``images`` (tensor [B_ok, ...] or None when every item
    failed), ``widths``/``heights``/``masks`` (lists, B_ok long, aligned with ``indices``; masks are
    None without a mask loader) and ``failed`` (list of ``(index, message)`` for the items whose
    image or mask could not be read). ``images``: the tensor ``[B, ...]`` the items were read into, row b
    holding ``batch[b]`` (:meth:`LocalizationImages.read` with ``out=images[b]``): used as it is when every
    item is good, else its good rows, instead of stacking. ``channels_last``: stacked images ``[B, C, H, W]``
    are laid out channels-last (for a channels-last model, e.g. in a DataLoader worker:
    ``functools.partial(collate_localization, channels_last=True)``); the same values.
    """
    good = [item for item in batch if item["image"] is not None]
    if not good:
        stacked = None
    elif images is None:
        stacked = torch.stack([item["image"] for item in good])
        if channels_last and stacked.dim() == 4:
            stacked = stacked.contiguous(memory_format=torch.channels_last)
    elif len(good) == len(batch):
        stacked = images
    else:
        stacked = images[[b for b, item in enumerate(batch) if item["image"] is not None]]
    return {
        "indices": torch.tensor([item["index"] for item in good], dtype=torch.int64),
        "images": stacked,
        "widths": [item["width"] for item in good],
        "heights": [item["height"] for item in good],
        "masks": [item.get("mask") for item in good],
        "failed": [(item["index"], item["error"]) for item in batch if item["image"] is None],
    }
