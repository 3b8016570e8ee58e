"""Local web front ends: ``camkit serve`` (explain photos interactively), ``camkit view`` (browse an
evaluation run) and the self-contained ``report.html`` of a run.

The web server (Starlette + uvicorn, the ``camkit[app]`` extra) is imported only by
:mod:`camkit.app.serve_app` and :mod:`camkit.app.view_app`; the other modules here (paths, boxes for
every threshold, run-directory reading, the HTML report) need numpy, OpenCV and Pillow only.
"""

from __future__ import annotations

from camkit._lazy import lazy_getattr

_LAZY = {
    "write_report_html": ("camkit.app.report_html", "write_report_html"),
    "read_run_dir": ("camkit.app.rundir", "read_run_dir"),
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr("camkit.app", _LAZY, globals())
