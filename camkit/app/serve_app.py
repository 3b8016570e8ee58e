"""The ``camkit serve`` web app (Starlette): upload or pick photos, explain them, move the threshold.

Endpoints (JSON unless noted; errors are ``{"error": one line}`` with a 4xx status):

- ``GET /`` the page; ``GET /static/...`` its script and style.
- ``GET /api/config`` models, methods, the threshold grid, the served folder.
- ``GET /api/classes?model=M`` the model's class names (for the class search).
- ``GET /api/folder`` images under ``--folder`` (relative paths); ``POST /api/open {"path"}`` opens one.
- ``POST /api/upload`` (multipart ``file``) -> ``{"photo_id", "name", "width", "height"}``.
- ``GET /api/photo/{photo_id}`` the photo (image bytes).
- ``POST /api/explain {"photo_id", "model", "method", "topk", "classes", "resize_mode"}`` -> the top-k
  table (``camkit explain --json``'s record plus ``result_id``, ``seen_box``, ``method``).
- ``GET /api/result/{rid}/class/{j}`` class ``j``'s boxes at every threshold (both conventions).
- ``GET /api/result/{rid}/heat/{j}/{relu_max|minmax}.png`` the heat layer (RGBA PNG).
- ``GET /api/result/{rid}/download/{json|png|npy}?tau=T`` what ``camkit explain --tau T --out`` writes.
"""

from __future__ import annotations

import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from camkit.app.http_common import STATIC_DIR, blocking, endpoint, html_page
from camkit.app.imaging import colourbar_png
from camkit.app.serve_session import MAX_UPLOAD_BYTES, ServeSession
from camkit.errors import ImageError, ParameterError

__all__ = ["create_serve_app"]


def create_serve_app(session: ServeSession) -> Starlette:
    """The Starlette app serving ``session`` (see the module docstring for the endpoints)."""
    colourbar = colourbar_png()

    async def index(request: Request) -> Response:
        return html_page("serve.html")

    @endpoint
    async def config(request: Request) -> Response:
        return JSONResponse(await blocking(session.config))

    @endpoint
    async def classes(request: Request) -> Response:
        names = await blocking(session.class_names, request.query_params.get("model") or None)
        return JSONResponse({"classes": names})

    @endpoint
    async def folder(request: Request) -> Response:
        return JSONResponse({"folder": str(session.folder) if session.folder else None,
                             "images": await blocking(session.folder_images)})

    def photo_doc(p) -> dict:
        return {"photo_id": p.photo_id, "name": p.name, "width": int(p.pixels.shape[1]), "height": int(p.pixels.shape[0])}

    @endpoint
    async def upload(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 65536:
            raise ImageError(f"upload too large ({int(length) / 2**20:.0f} MiB, limit {MAX_UPLOAD_BYTES // 2**20} MiB); downscale or re-export the image")
        form = await request.form(max_files=1, max_fields=4)
        try:
            item = form.get("file")
            if item is None or isinstance(item, str):
                raise ParameterError("file", None, "is missing; send the photo as the multipart field 'file'")
            data = await item.read(MAX_UPLOAD_BYTES + 1)
            name = item.filename or "upload"
        finally:
            await form.close()
        photo = await blocking(session.add_upload, name, data)
        return JSONResponse(photo_doc(photo))

    @endpoint
    async def open_path(request: Request) -> Response:
        body = await request.json()
        photo = await blocking(session.add_folder_image, str(body.get("path", "")))
        return JSONResponse(photo_doc(photo))

    @endpoint
    async def photo(request: Request) -> Response:
        p = session.photo(request.path_params["photo_id"])
        return Response(p.page_bytes, media_type=p.page_mime, headers={"Cache-Control": "private, max-age=3600"})

    @endpoint
    async def explain(request: Request) -> Response:
        body = await request.json()
        classes = body.get("classes") or None
        if isinstance(classes, str):
            classes = [c for c in classes.split(",") if c.strip()]
        result = await blocking(
            session.explain, str(body.get("photo_id", "")), body.get("model") or None, body.get("method") or None,
            int(body.get("topk", 5)), classes, body.get("resize_mode", "crop"),
        )
        doc = session.result_doc(result)
        doc["first_class"] = await blocking(session.class_view, result.result_id, 0)
        return JSONResponse(doc)

    @endpoint
    async def class_view(request: Request) -> Response:
        view = await blocking(session.class_view, request.path_params["rid"], int(request.path_params["j"]))
        return JSONResponse(view)

    @endpoint
    async def heat(request: Request) -> Response:
        data = await blocking(session.heat_png, request.path_params["rid"], int(request.path_params["j"]),
                              request.path_params["norm"])
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @endpoint
    async def download(request: Request) -> Response:
        tau = float(request.query_params.get("tau", "0.2"))
        data, name, mime = await blocking(session.download, request.path_params["rid"], request.path_params["kind"], tau)
        return Response(data, media_type=mime, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def colourbar_route(request: Request) -> Response:
        return Response(colourbar, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/classes", classes),
        Route("/api/folder", folder),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/open", open_path, methods=["POST"]),
        Route("/api/photo/{photo_id}", photo),
        Route("/api/explain", explain, methods=["POST"]),
        Route("/api/result/{rid}/class/{j:int}", class_view),
        Route("/api/result/{rid}/heat/{j:int}/{norm}.png", heat),
        Route("/api/result/{rid}/download/{kind}", download),
        Route("/api/colourbar.png", colourbar_route),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            session.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.session = session
    return app
