"""The ``camkit view`` web app (Starlette): browse one or two evaluation runs read-only.

Endpoints (JSON unless noted; errors ``{"error": one line}``):

- ``GET /`` the page.
- ``GET /api/runs`` each run: label, model, method, summary numbers, the tau grid, BoxAcc curves
  (V1 and V2 at IoU 0.3/0.5/0.7, percent, from the records) and the best-tau index.
- ``GET /api/rows`` one row per image of the first run (see :func:`camkit.app.rundir.image_rows`),
  with ``runs[k]`` the row of run ``k`` (None when that run lacks the image), the per-tau V1 IoUs
  ``v1`` of each run, and ``disagreement`` = |IoU_A - IoU_B| at each run's best tau.
- ``GET /api/run/{r}/image/{i}/photo.png`` the photo squashed to the run's input size.
- ``GET /api/run/{r}/image/{i}/heat.png`` the GT class's min-max map (recomputed, cached).
- ``GET /api/run/{r}/image/{i}/boxes`` the map's wsolevaluation boxes at every tau (V1, V2).

Nothing is written to the run folders.
"""

from __future__ import annotations

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from camkit.app.http_common import STATIC_DIR, blocking, endpoint, html_page
from camkit.app.imaging import colourbar_png
from camkit.app.run_maps import RunMaps
from camkit.app.rundir import RunDir, image_rows
from camkit.errors import ParameterError

__all__ = ["create_view_app", "merged_rows", "run_docs"]

IOU_KEYS = ("30", "50", "70")


def run_docs(runs: list[RunDir]) -> list[dict]:
    """What the page shows about each run (curves recomputed from the records)."""
    docs = []
    for r in runs:
        curves = {v: {k: r.curve(v, int(k) / 100).round(6).tolist() for k in IOU_KEYS} for v in ("v1", "v2")}
        best = r.best_tau_index("v1")
        docs.append({
            "label": r.label,
            "path": str(r.path),
            "model": r.model,
            "method": r.method,
            "input_size": r.input_size,
            "dataset": {k: v for k, v in r.dataset.items() if k in ("name", "source", "n_images")},
            "numbers": r.summary_numbers(),
            "taus": [round(float(t), 10) for t in r.taus],
            "curves": curves,
            "best_tau_index": best,
            # masks only (PxAP): no box curve or IoUs; the cursor starts at CVPR16's tau 0.2 of the max
            "has_boxes": r.has_boxes,
            "start_tau_index": best if r.has_boxes else int(np.argmin(np.abs(r.taus - 0.2))),
        })
    return docs


def merged_rows(runs: list[RunDir]) -> list[dict]:
    """Rows of the first run's images, each with every run's row matched by image id."""
    per_run = [{row["id"]: row for row in image_rows(r)} for r in runs]
    v1_by_run = [{str(rec.get("id")): np.asarray(rec["v1"]).tolist() for rec in r.records if "v1" in rec} for r in runs]
    out = []
    for row in image_rows(runs[0]):
        merged = dict(row)
        merged["runs"] = [m.get(row["id"]) for m in per_run]
        merged["v1"] = [v.get(row["id"]) for v in v1_by_run]
        first, second = ([m.get("iou") if m else None for m in merged["runs"]] + [None])[:2]
        merged["disagreement"] = abs(first - second) if first is not None and second is not None else None
        out.append(merged)
    return out


def create_view_app(runs: list[RunDir], maps: list[RunMaps]) -> Starlette:
    """The Starlette app for ``runs`` (one or two); ``maps[k]`` recomputes run ``k``'s maps."""
    if not 1 <= len(runs) <= 2 or len(maps) != len(runs):
        raise ParameterError("runs", len(runs), "must be one or two run folders, each with its map source")
    docs = run_docs(runs)
    rows = merged_rows(runs)
    colourbar = colourbar_png()

    async def index(request: Request) -> Response:
        return html_page("view.html")

    @endpoint
    async def runs_route(request: Request) -> Response:
        return JSONResponse({"runs": docs})

    @endpoint
    async def rows_route(request: Request) -> Response:
        return JSONResponse({"rows": rows})

    def which(request: Request) -> tuple[RunMaps, int]:
        r = int(request.path_params["r"])
        if not 0 <= r < len(maps):
            raise ParameterError("r", r, f"must be a run number 0-{len(maps) - 1}")
        return maps[r], int(request.path_params["i"])

    @endpoint
    async def photo(request: Request) -> Response:
        m, i = which(request)
        item = await blocking(m.get, i)
        return Response(item.photo_png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @endpoint
    async def heat(request: Request) -> Response:
        m, i = which(request)
        item = await blocking(m.get, i)
        return Response(item.heat_png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @endpoint
    async def boxes(request: Request) -> Response:
        m, i = which(request)
        item = await blocking(m.get, i)
        return JSONResponse({"v1": item.v1, "v2": item.v2, "map_min": item.map_min, "map_max": item.map_max})

    async def colourbar_route(request: Request) -> Response:
        return Response(colourbar, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    routes = [
        Route("/", index),
        Route("/api/runs", runs_route),
        Route("/api/rows", rows_route),
        Route("/api/run/{r:int}/image/{i:int}/photo.png", photo),
        Route("/api/run/{r:int}/image/{i:int}/heat.png", heat),
        Route("/api/run/{r:int}/image/{i:int}/boxes", boxes),
        Route("/api/colourbar.png", colourbar_route),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes)
