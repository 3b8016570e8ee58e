"""Starlette pieces shared by ``camkit serve`` and ``camkit view``: error responses, static files, uvicorn.

Every error a page can trigger comes back as JSON ``{"error": "<one line>"}`` with a 4xx status
(camkit's own one-line messages), or 500 with a one-line summary for a bug; the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from camkit.app.safe_paths import OutsideFolderError
from camkit.errors import CamkitError, ImageError

STATIC_DIR = Path(__file__).with_name("static")

log = logging.getLogger("camkit.app")


def error_response(exc: Exception) -> JSONResponse:
    """The JSON error for ``exc``: 403 outside the folder, 400 bad input, 500 anything else."""
    if isinstance(exc, OutsideFolderError):
        return JSONResponse({"error": str(exc)}, status_code=403)
    if isinstance(exc, ImageError):
        return JSONResponse({"error": str(exc)}, status_code=400)
    if isinstance(exc, (CamkitError, ValueError, KeyError)):
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JSONResponse({"error": msg.strip("'\"")}, status_code=400)
    log.exception("internal error")
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return JSONResponse({"error": f"unexpected {type(exc).__name__}: {msg}"}, status_code=500)


def endpoint(fn: Callable) -> Callable:
    """Wrap an ``async def (request)`` endpoint: camkit errors become JSON error responses."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as e:  # noqa: BLE001 - every failure becomes a one-line JSON error
            return error_response(e)

    return wrapper


async def blocking(fn: Callable, *args, **kwargs):
    """Run a CPU-bound call in the thread pool so the event loop keeps answering."""
    return await run_in_threadpool(functools.partial(fn, *args, **kwargs))


def html_page(name: str) -> Response:
    return Response((STATIC_DIR / name).read_bytes(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests and ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_server(app, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` with uvicorn until interrupted; ``on_ready(url)`` is called once it listens."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                on_ready(f"http://{host}:{port}/")

        server.startup = startup  # type: ignore[method-assign]  # wrapping uvicorn's own startup: the one hook after the socket binds
    server.run()
