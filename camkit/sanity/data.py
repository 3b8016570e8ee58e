"""Data randomization test (Adebayo et al., NeurIPS 2018, arXiv 1810.03292, section 4).

The same model trained on the true labels and on randomly permuted labels must explain differently:
a method whose maps barely change when the labels carry no information does not depend on what the
model learned from them. Training the whole network on permuted labels is the paper's setting; here
the backbone stays frozen and only the pool+linear head is trained (twice, from the same seeded
initialisation, on the same pooled features), which is cheap and isolates what the labels teach the
head. Both heads are trained until they fit their training labels (a linear head on K >= N pooled
features can memorise permuted labels), and the maps of each evaluation image's true class are compared.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DatasetError, ModelError
from ..models.cam_model import CAMModel
from ..preprocess import ResizeMode
from .cascade import compare, method_maps, prepare_inputs
from .result import SanityResult
from .similarity import MEASURES


def train_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, seed: int = 0,
               steps: int = 500, lr: float = 0.05) -> nn.Linear:
    """A linear layer fitted to pooled ``features [N, K]`` and ``labels [N]`` (full-batch Adam, seeded init)."""
    gen = torch.Generator().manual_seed(seed)
    k = features.shape[1]
    head = nn.Linear(k, num_classes)
    with torch.no_grad():
        bound = 1.0 / k**0.5
        head.weight.uniform_(-bound, bound, generator=gen)
        head.bias.uniform_(-bound, bound, generator=gen)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(head(features), labels).backward()
            opt.step()
    return head.eval()


def _with_head(model: CAMModel, head: nn.Linear) -> CAMModel:
    m = copy.deepcopy(model)
    m.net.set_submodule(m.classifier_path, head)
    m.categories = None
    return m.eval()


def data_randomization_test(
    model: CAMModel,
    train_images: Sequence,
    train_labels: Sequence[int],
    eval_images: Sequence,
    eval_labels: Sequence[int],
    methods: Sequence[str] = ("cam", "gradcam"),
    *,
    seed: int = 0,
    layer: str | None = None,
    resize_mode: ResizeMode = "squash",
    batch_size: int = 32,
) -> SanityResult:
    """Compare maps of a head trained on true labels with one trained on permuted labels.

    Args:
        model: a camkit model with a pool+linear head (its backbone is used frozen; it is not modified).
        train_images, train_labels: the training set (labels 0..n-1; at least 2 classes and 2 images
            per class, or the test says nothing).
        eval_images, eval_labels: images whose true-class maps are compared.
        methods: names from :data:`camkit.cam.methods.METHODS`.
        seed: seeds the permutation and both heads' initialisation.

    Returns:
        A :class:`SanityResult` with ``steps == ["true labels", "permuted labels"]``; ``extra`` holds
        both heads' training accuracy (both should fit: a permuted-label head that fits proves the
        labels were learnt, not the images' content).
    """
    if not isinstance(model, CAMModel):
        raise ModelError("the data randomization test trains a new pool+linear head: it needs a camkit CAM model")
    y = torch.as_tensor(list(train_labels), dtype=torch.int64)
    counts = torch.bincount(y)
    if (counts > 0).sum() < 2 or int(counts[counts > 0].min()) < 2:
        raise DatasetError("the data randomization test needs at least 2 classes with at least 2 training images each")
    num_classes = int(y.max()) + 1
    x_train = prepare_inputs(model, train_images, resize_mode)
    with torch.no_grad():
        feats = model.pooled(model.features(x_train)).float()
    gen = torch.Generator().manual_seed(seed)
    y_perm = y[torch.randperm(len(y), generator=gen)]
    heads = {"true labels": train_head(feats, y, num_classes, seed=seed),
             "permuted labels": train_head(feats, y_perm, num_classes, seed=seed)}
    result = SanityResult(test="data", model=str(model.name), steps=list(heads))
    with torch.no_grad():
        result.extra = {
            "train_accuracy_true_labels": float((heads["true labels"](feats).argmax(1) == y).float().mean()),
            "train_accuracy_permuted_labels": float((heads["permuted labels"](feats).argmax(1) == y_perm).float().mean()),
            "label_agreement_after_permutation": float((y_perm == y).float().mean()),
        }
    trained = _with_head(model, heads["true labels"])
    permuted = _with_head(model, heads["permuted labels"])
    x_eval = prepare_inputs(model, eval_images, resize_mode)
    targets = torch.as_tensor(list(eval_labels), dtype=torch.int64)
    for name in methods:
        t0 = time.perf_counter()
        ref = method_maps(trained, x_eval, name, targets, layer, batch_size)
        other = method_maps(permuted, x_eval, name, targets, layer, batch_size)
        result.seconds[name] = time.perf_counter() - t0
        sims = compare(ref, other)
        result.per_image[name] = {m: [[1.0] * len(x_eval), sims[m]] for m in MEASURES}
    result.scores = {
        name: {measure: [float(np.mean(v)) for v in per_step] for measure, per_step in measures.items()}
        for name, measures in result.per_image.items()
    }
    return result
