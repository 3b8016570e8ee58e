"""The sanity-check figure: similarity to the trained model's maps vs randomized block, one line per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .result import SanityResult  # noqa: E402

_TITLES = {"spearman_abs": "Spearman rank corr. (absolute maps)", "spearman": "Spearman rank corr. (signed maps)",
           "ssim": "SSIM (min-max maps)"}


def plot_sanity(result: SanityResult, path: str | Path, measures: tuple[str, ...] = ("spearman_abs", "ssim")) -> Path:
    """Write the figure to ``path`` (PNG): one panel per measure, x = steps in order, y in [-1, 1]."""
    path = Path(path)
    fig, axes = plt.subplots(1, len(measures), figsize=(max(6.0, 0.55 * len(result.steps)) * len(measures) / 1.4, 4.2),
                             squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        for method, per in result.scores.items():
            ax.plot(range(len(result.steps)), per[measure], marker="o", ms=3, lw=1.4, label=method)
        ax.axhline(0.0, color="0.6", lw=0.8, ls=":")
        lowest = min(min(per[measure]) for per in result.scores.values()) if result.scores else 0.0
        ax.set_ylim(min(-0.3, lowest - 0.1), 1.05)
        ax.set_xticks(range(len(result.steps)))
        ax.set_xticklabels(result.steps, rotation=60, ha="right", fontsize=7)
        ax.set_title(_TITLES.get(measure, measure), fontsize=9)
        ax.set_ylabel("similarity to trained model's map", fontsize=8)
        ax.grid(alpha=0.3)
    label = {"cascading": "cascading randomization (logits -> input)", "independent": "independent layer randomization",
             "data": "data randomization (permuted labels)"}.get(result.test, result.test)
    fig.suptitle(f"Sanity checks (Adebayo et al. 2018): {label}, {result.model}", fontsize=10)
    axes[0][-1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
