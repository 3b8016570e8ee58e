"""The names of the files a ``camkit evaluate --out`` folder holds (no heavy imports: the report, the viewer
and the figure process read them too).

``summary["run"]["files"]`` maps a key to the name of each output the run wrote: ``summary``,
``per_image``, ``curves``, ``pxap_curve``, ``gallery_best``, ``gallery_worst``, ``report``, ``report_html``.
"""

from __future__ import annotations

SUMMARY_NAME = "summary.json"
PER_IMAGE_NAME = "per_image.csv"
CURVES_NAME = "boxacc_vs_tau.png"
PXAP_CURVE_NAME = "pxap_pr_curve.png"
GALLERY_BEST_NAME = "gallery_best.png"
GALLERY_WORST_NAME = "gallery_worst.png"
REPORT_NAME = "report.md"
REPORT_HTML_NAME = "report.html"

#: The figures, in the order a report shows them: curves first, then the worst images, then the best.
FIGURE_NAMES = (CURVES_NAME, PXAP_CURVE_NAME, GALLERY_WORST_NAME, GALLERY_BEST_NAME)
