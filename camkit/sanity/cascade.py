"""Model-parameter randomization test (Adebayo et al., NeurIPS 2018, arXiv 1810.03292, section 3).

A saliency method that explains the *model* must produce different maps once the model's learned
weights are gone. The cascading test re-initialises the network block by block from the logits down
to the input and compares each randomized model's maps with the trained model's, for the same images
and the same target classes; the independent test randomizes one block at a time. Maps that stay
similar (high rank correlation / SSIM) all the way down depend on the input more than on the model:
the method fails the check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..cam.engine import upsample
from ..cam.methods import compute_method_maps, method_info
from ..errors import CamkitError
from ..io import load_image
from ..models.cam_model import CAMModel
from ..models.classifier_model import ClassifierModel
from ..preprocess import ResizeMode
from .blocks import randomization_blocks, randomized_copies
from .result import SanityResult
from .similarity import MEASURES

Progress = Callable[[int, int], None]


def prepare_inputs(model: CAMModel | ClassifierModel, images: Sequence, resize_mode: ResizeMode = "squash") -> torch.Tensor:
    """Normalised input ``[N, 3, S, S]`` for paths / PIL images / HWC uint8 arrays, by the model's preprocessing."""
    arrays = [model.preprocess.to_array(load_image(im), resize_mode)[0] for im in images]
    return torch.from_numpy(np.stack(arrays))


def method_maps(model: nn.Module, x: torch.Tensor, method: str, targets: torch.Tensor, layer: str | Sequence[str] | None,
                batch_size: int, *, smooth: str | None = None, seed: int = 0) -> np.ndarray:
    """Maps ``[N, S, S]`` (float64, input resolution, bilinear) of ``targets [N]`` by ``method``
    (``layer``, ``smooth``, ``seed``: as :func:`camkit.cam.methods.compute_method_maps`)."""
    r = compute_method_maps(model, x, method, targets[:, None], layer, batch_size, seed=seed, smooth=smooth)
    maps = r.maps.float()
    if maps.shape[-2:] != x.shape[-2:]:
        maps = upsample(maps, (int(x.shape[-2]), int(x.shape[-1])), "bilinear")
    return np.nan_to_num(maps[:, 0].cpu().numpy().astype(np.float64))


def compare(reference: np.ndarray, maps: np.ndarray) -> dict[str, list[float]]:
    """Per-image similarities of ``maps [N, S, S]`` to ``reference [N, S, S]`` for every measure."""
    return {name: [fn(a, b) for a, b in zip(reference, maps, strict=True)] for name, fn in MEASURES.items()}


def _applicable(model: nn.Module, method: str) -> str | None:
    if method_info(method).name == "cam" and not (isinstance(model, CAMModel) and model.cam_kind != "gradient"):
        return "plain CAM needs a pool+linear head"
    return None


def model_randomization_test(
    model: CAMModel | ClassifierModel,
    images: Sequence,
    methods: Sequence[str] = ("cam", "gradcam"),
    *,
    classes: Sequence[int] | None = None,
    mode: str = "cascading",
    seed: int = 0,
    layer: str | Sequence[str] | None = None,
    smooth: str | None = None,
    resize_mode: ResizeMode = "squash",
    batch_size: int = 32,
    progress: Progress | None = None,
) -> SanityResult:
    """Run the cascading (or independent) model-parameter randomization test.

    Args:
        model: a trained camkit model (a deep copy is randomized; ``model`` is left untouched).
        images: paths, PIL images or ``[H, W, 3]`` uint8 arrays.
        methods: names from :data:`camkit.cam.methods.METHODS`.
        classes: the target class of each image (e.g. its ground truth); default: the trained
            model's top-1 prediction. The same targets are explained at every step.
        mode: ``"cascading"`` (blocks randomized cumulatively from the logits down) or ``"independent"``.
        seed: seeds the re-initialisation (same seed, same randomized models).
        layer: target layer for the non-CAM methods, or several to fuse (default: each method's automatic
            choice on the randomized model, which is the same module as on the trained one).
        smooth: ``"aug"`` / ``"eigen"`` smoothing of every map (None: off); the method's own noise is
            seeded with ``seed`` at every step, so only the weights differ between steps.
        batch_size: masked inputs per forward for perturbation methods.
        progress: called with ``(done, total)`` after each step.

    Returns:
        A :class:`SanityResult`; ``steps[0] == "original"`` with similarity 1.
    """
    x = prepare_inputs(model, images, resize_mode)
    model = model.eval()
    with torch.no_grad():
        logits = model(x)
    targets = torch.as_tensor(list(classes), dtype=torch.int64) if classes is not None else logits.argmax(1)
    blocks = randomization_blocks(model, x[:1])
    result = SanityResult(test=mode, model=str(getattr(model, "name", type(model).__name__)),
                          steps=["original"] + [b.name for b in blocks])
    runnable = []
    for m in methods:
        name = method_info(m).name
        reason = _applicable(model, name)
        if reason:
            result.skipped[name] = reason
        else:
            runnable.append(name)
    reference: dict[str, np.ndarray] = {}
    for name in runnable:
        t0 = time.perf_counter()
        reference[name] = method_maps(model, x, name, targets, layer, batch_size, smooth=smooth, seed=seed)
        result.seconds[name] = time.perf_counter() - t0
        ones = [[1.0] * len(x)]
        result.per_image[name] = {k: [list(v) for v in ones] for k in MEASURES}
    total = len(blocks)
    for k, (_block, randomized) in enumerate(randomized_copies(model, blocks, mode, seed), start=1):
        for name in runnable:
            t0 = time.perf_counter()
            try:
                maps = method_maps(randomized, x, name, targets, layer, batch_size, smooth=smooth, seed=seed)
            except CamkitError as e:
                raise CamkitError(f"{name} failed on the model randomized down to {blocks[k - 1].name}: {e}") from None
            result.seconds[name] += time.perf_counter() - t0
            for measure, vals in compare(reference[name], maps).items():
                result.per_image[name][measure].append(vals)
        if progress is not None:
            progress(k, total)
    result.scores = {
        name: {measure: [float(np.mean(v)) for v in per_step] for measure, per_step in measures.items()}
        for name, measures in result.per_image.items()
    }
    return result
