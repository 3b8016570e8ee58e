"""Training data for ``camkit finetune``: (image, class index) datasets from the layouts users have.

``load_training_data(kind, root, ...)`` returns a :class:`TrainData` with torch datasets for training
(augmenting transform) and validation (the model's eval transform), the class names and count:

- ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*`` (torchvision ImageFolder,
  classes in sorted folder order); without ``train/``, ``root/<class>/*`` is split into train and
  validation (``val_fraction`` of each class, chosen with the seed).
- ``cifar10``: torchvision's CIFAR10 under ``root`` (50,000 train / 10,000 test), downloaded when
  missing and online; offline, a one-line :class:`DatasetError`.
- ``cub``: CUB-200-2011 (``read_cub``): the official train split for training, test for validation.
- ``ilsvrc``: ILSVRC-2012 val boxes (``read_ilsvrc(root)``) as validation; training images from
  ``root/train/<wnid>/*`` (classes in sorted wnid order, ILSVRC's class indices) when present,
  otherwise a held-out split of the val images.
- ``csv``: ``image_path,class_index,x1,y1,x2,y2`` (``read_csv_boxes``): ``root`` is a CSV file
  (split into train/val) or a folder with ``train.csv`` and ``val.csv``.

Images are loaded with :func:`camkit.io.load_image` (EXIF-oriented 8-bit RGB PIL).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError, ParameterError

DATASETS = ("imagefolder", "cub", "ilsvrc", "cifar10", "csv")

MapDataset = Any
"""A torch map-style dataset with a length (``len(d)``, ``d[i] -> (tensor, class index)``): a
torchvision dataset, a ``Subset``, :class:`PathLabelDataset` or :class:`SeededItems`. torch types
``Dataset`` without ``__len__``, so no torch type says "sized"; DataLoader takes all of these."""


@dataclass
class TrainData:
    """Datasets yielding ``(tensor [3, S, S] float32, class index int)``; ``val`` may be empty."""

    train: MapDataset
    val: MapDataset
    class_names: list[str] | None
    num_classes: int
    description: str


class PathLabelDataset:
    """A list of ``(image path, class index)`` as a torch map-style dataset."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from ..io import load_image

        path, label = self.samples[i]
        return self.transform(load_image(path)), label


class SeededItems:
    """``dataset`` whose item ``i`` is made with torch's generator seeded from ``(seed, epoch, i)``.

    Random augmentation then depends on the image and the epoch only, not on which process, DataLoader
    worker or position in a batch loads it: a run on N processes (each reading its
    ``DistributedSampler`` share) augments every image exactly as one process does. The caller's own
    generator state is left untouched (``torch.random.fork_rng``). Set :attr:`epoch` before each epoch.
    """

    def __init__(self, dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch * 7919 + int(i) * 104_729) % (2**63 - 1))
            return self.dataset[i]


def split_samples(samples: Sequence[tuple[str, int]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Stratified split: ``round(val_fraction * n_c)`` images of each class c (at least one when the
    class has two or more) go to validation, picked with ``random.Random(seed)``; order is kept.
    When every class has a single image (a stratified split would validate on nothing),
    ``max(1, round(val_fraction * n))`` images are picked regardless of class."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (_, c) in enumerate(samples):
        by_class[c].append(i)
    rng = random.Random(seed)
    val_idx: set[int] = set()
    for c in sorted(by_class):
        idx = by_class[c]
        k = int(round(val_fraction * len(idx)))
        if val_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val_idx.update(rng.sample(idx, k) if k else [])
    if not val_idx and val_fraction > 0 and len(samples) >= 2:
        val_idx.update(rng.sample(range(len(samples)), max(1, int(round(val_fraction * len(samples))))))
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def _imagefolder_samples(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision.datasets import ImageFolder

    from ..io import is_image_path

    try:
        ds = ImageFolder(str(folder), is_valid_file=is_image_path)
    except (FileNotFoundError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(
            f"{folder} is not an ImageFolder ({msg}); put images in one sub-folder per class, "
            "e.g. ROOT/train/cat/1.jpg and ROOT/val/cat/2.jpg"
        ) from None
    return [(p, int(c)) for p, c in ds.samples], list(ds.classes)


def _imagefolder(root: Path, val_fraction: float, seed: int):
    if (root / "train").is_dir():
        train, classes = _imagefolder_samples(root / "train")
        val: list[tuple[str, int]] = []
        if (root / "val").is_dir():
            val, val_classes = _imagefolder_samples(root / "val")
            if val_classes != classes:
                raise DatasetError(
                    f"{root / 'val'} has classes {val_classes[:5]}... but {root / 'train'} has {classes[:5]}...; "
                    "train/ and val/ need the same class folders"
                )
        else:
            train, val = split_samples(train, val_fraction, seed)
        return train, val, classes, f"ImageFolder {root}"
    samples, classes = _imagefolder_samples(root)
    train, val = split_samples(samples, val_fraction, seed)
    return train, val, classes, f"ImageFolder {root} (split {1 - val_fraction:.0%}/{val_fraction:.0%})"


def _loc_samples(ds) -> list[tuple[str, int]]:
    return [(str(s.image_path), int(s.class_index)) for s in ds.samples]


def _cub(root: Path):
    from ..datasets import read_cub

    train, test = read_cub(root, "train"), read_cub(root, "test")
    return _loc_samples(train), _loc_samples(test), train.class_names, f"CUB-200-2011 {root} (train/test)"


def _ilsvrc(root: Path, val_fraction: float, seed: int):
    from ..datasets import read_ilsvrc

    val_ds = read_ilsvrc(root)
    val = _loc_samples(val_ds)
    names = val_ds.class_names
    if (root / "train").is_dir():
        train, wnids = _imagefolder_samples(root / "train")
        ids = val_ds.class_ids
        if ids is not None:
            # Folder order is sorted wnids; map each folder to the class index the val boxes use.
            lookup = {w: i for i, w in enumerate(ids)}
            missing = [w for w in wnids if w not in lookup]
            if missing:
                raise DatasetError(f"{root / 'train'}: folder {missing[0]} is not an ILSVRC wnid of the val annotations")
            train = [(p, lookup[wnids[c]]) for p, c in train]
        return train, val, names, f"ILSVRC {root} (train/ + val boxes)"
    train, val = split_samples(val, val_fraction, seed)
    return train, val, names, f"ILSVRC val {root} (split {1 - val_fraction:.0%}/{val_fraction:.0%}; no train/ folder)"


def _csv(root: Path, val_fraction: float, seed: int):
    from ..datasets import read_csv_boxes

    if root.is_dir():
        if not (root / "train.csv").is_file():
            raise DatasetError(f"no train.csv in {root}; pass a CSV file as the root or put train.csv (and val.csv) there")
        train = _loc_samples(read_csv_boxes(root / "train.csv"))
        val = _loc_samples(read_csv_boxes(root / "val.csv")) if (root / "val.csv").is_file() else []
        if not val:
            train, val = split_samples(train, val_fraction, seed)
        return train, val, None, f"CSV {root}/train.csv"
    if not root.is_file():
        raise DatasetError(f"{root} does not exist; pass a CSV file or a folder with train.csv and val.csv")
    train, val = split_samples(_loc_samples(read_csv_boxes(root)), val_fraction, seed)
    return train, val, None, f"CSV {root} (split {1 - val_fraction:.0%}/{val_fraction:.0%})"


def cifar10_datasets(root: Path, train_tf: Callable, eval_tf: Callable):
    """torchvision CIFAR10 train/test under ``root``; downloads when absent, one-line error offline."""
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, transform=train_tf, download=False)
        val = CIFAR10(str(root), train=False, transform=eval_tf, download=False)
        return train, val
    except RuntimeError:
        pass  # not there (or corrupt): try to download it
    try:
        root.mkdir(parents=True, exist_ok=True)
        train = CIFAR10(str(root), train=True, transform=train_tf, download=True)
        val = CIFAR10(str(root), train=False, transform=eval_tf, download=True)
    except Exception as e:  # urllib/socket/ssl/checksum errors all mean "cannot get it"
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DatasetError(
            f"CIFAR-10 not found under {root} and it cannot be downloaded here: {reason}; put "
            "cifar-10-batches-py/ (from cifar-10-python.tar.gz) under that folder or go online once"
        ) from None
    return train, val


#: Why fewer than two classes are refused rather than trained.
ONE_CLASS_REASON = "a classifier needs at least two classes (with one, every answer is right and it learns nothing)"


def load_training_data(
    kind: str,
    root: str | Path,
    train_tf: Callable,
    eval_tf: Callable,
    *,
    num_classes: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> TrainData:
    """Train/val datasets of ``kind`` (one of :data:`DATASETS`) under ``root`` (see module doc).

    ``num_classes`` (optional) must cover every label; by default it is the number of class names,
    or the largest label + 1.
    """
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind {kind!r}; use one of {', '.join(DATASETS)}")
    root = Path(root)
    if kind == "cifar10":
        from ..models.cifar import CIFAR10_CLASSES

        train_ds, val_ds = cifar10_datasets(root, train_tf, eval_tf)
        n = num_classes or 10
        if n < 10:
            raise ParameterError("num_classes", n, "is below CIFAR-10's 10 classes; leave it out")
        return TrainData(train_ds, val_ds, list(CIFAR10_CLASSES), n, f"CIFAR-10 {root} (50000/10000)")
    if kind != "csv" and not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder; pass the folder that holds the {kind} data")
    if kind == "imagefolder":
        train, val, names, desc = _imagefolder(root, val_fraction, seed)
    elif kind == "cub":
        train, val, names, desc = _cub(root)
    elif kind == "ilsvrc":
        train, val, names, desc = _ilsvrc(root, val_fraction, seed)
    else:
        train, val, names, desc = _csv(root, val_fraction, seed)
    if not train:
        raise DatasetError(f"no training images found in {root} ({kind}); check the layout in the camkit.finetune.data docs")
    if num_classes is not None and num_classes < 2:
        raise ParameterError("num_classes", num_classes, f"is too few: {ONE_CLASS_REASON}")
    labels = sorted({c for _, c in train})
    if len(labels) < 2:
        only = names[labels[0]] if names and 0 <= labels[0] < len(names) else f"index {labels[0]}"
        raise DatasetError(f"{desc} has one class ({only}); {ONE_CLASS_REASON}; add images of another class")
    top = max(c for _, c in train + val) + 1
    n = num_classes or (len(names) if names else top)
    if top > n:
        raise ParameterError("num_classes", n, f"is too few: {desc} has class index {top - 1}; use at least {top}")
    if names is not None and len(names) != n:
        names = names[:n] if len(names) > n else None
    return TrainData(PathLabelDataset(train, train_tf), PathLabelDataset(val, eval_tf), names, n, f"{desc}: {len(train)} train / {len(val)} val images")
