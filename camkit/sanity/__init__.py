"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

- :func:`model_randomization_test`: cascading (or independent) re-initialisation of the model from
  the logits down to the input; each method's maps are compared with the trained model's.
- :func:`data_randomization_test`: a head trained on permuted labels vs one trained on true labels.
- Similarities: Spearman rank correlation (signed and absolute maps) and SSIM; a method passes when
  they fall as the model loses what it learned.

Example:
    >>> import camkit, skimage.data
    >>> from camkit.sanity import model_randomization_test
    >>> r = model_randomization_test(camkit.load_model(), [skimage.data.chelsea()], ["gradcam"])  # doctest: +SKIP
    >>> r.final("gradcam") < 0.5  # doctest: +SKIP
    True
"""

from .blocks import Block, randomization_blocks, randomize_, randomized_copies
from .cascade import model_randomization_test
from .data import data_randomization_test, train_head
from .plot import plot_sanity
from .result import SanityResult
from .similarity import spearman, ssim

__all__ = [
    "Block",
    "SanityResult",
    "data_randomization_test",
    "model_randomization_test",
    "plot_sanity",
    "randomization_blocks",
    "randomize_",
    "randomized_copies",
    "spearman",
    "ssim",
    "train_head",
]
