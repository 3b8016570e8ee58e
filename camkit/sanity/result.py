"""The result of a sanity check: similarity to the trained model's maps, per method and step."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SanityResult:
    """Similarities of each method's maps to the trained model's maps.

    Attributes:
        test: ``"cascading"``, ``"independent"`` (model-parameter randomization) or ``"data"``
            (data randomization: a head trained on permuted labels vs one trained on the true labels).
        model: the model's name.
        steps: the x axis: ``"original"`` then, for the parameter tests, the randomized block names
            top down (cascading: cumulative); for the data test ``["true labels", "permuted labels"]``.
        scores: ``scores[method][measure][step]`` = mean over images (measures: ``spearman``,
            ``spearman_abs``, ``ssim``; 1.0 at ``"original"`` by construction).
        per_image: ``per_image[method][measure][step][image]``.
        seconds: wall time per method.
        skipped: methods that could not run on this model, with the reason.
        extra: test-specific facts (e.g. training accuracies of the data test).
    """

    test: str
    model: str
    steps: list[str]
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    per_image: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.scores)

    def final(self, method: str, measure: str = "spearman_abs") -> float:
        """The similarity at the last step (fully randomized / permuted labels)."""
        return self.scores[method][measure][-1]

    def to_dict(self) -> dict:
        return asdict(self)

    def write_csv(self, path: str | Path) -> Path:
        """One row per method, measure and step: ``method,measure,step_index,step,mean,std``."""
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["method", "measure", "step_index", "step", "mean", "std"])
            for method, measures in self.per_image.items():
                for measure, per_step in measures.items():
                    for i, (step, vals) in enumerate(zip(self.steps, per_step, strict=True)):
                        w.writerow([method, measure, i, step, f"{np.mean(vals):.6f}", f"{np.std(vals):.6f}"])
        return path
