"""``camkit serve``: a local web page to explain photos (needs the ``camkit[app]`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import err_console, fail, one_line_errors

APP_EXTRA_HINT = "the web app needs the app extra: pip install 'camkit[app]' (starlette, uvicorn, python-multipart)"


def require_app_extra() -> None:
    """Fail with one line when Starlette/uvicorn are not installed."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"{APP_EXTRA_HINT}; missing: {', '.join(missing)}")


def check_host(host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] serving on {host}: anyone who can reach this address can use the page "
                          "and read the photos you open", soft_wrap=True)


@one_line_errors
def serve_command(
    model: str | None = typer.Option(None, "--model", "-m", help="Model selected first (registry name); default: the embedded efficientnet_lite0."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Weights for --model (checkpoint file, torchvision weights name, or 'random')."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 127.0.0.1 keeps the page on this machine."),
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    folder: Path | None = typer.Option(None, "--folder", help="Let the page open images from this folder (nothing outside it)."),
) -> None:
    """A local web page: drop photos, pick model, method, classes and box rule, move the threshold live."""
    require_app_extra()
    from camkit.app.http_common import free_port, run_server
    from camkit.app.serve_app import create_serve_app
    from camkit.app.serve_session import ServeSession

    if folder is not None and not folder.is_dir():
        raise fail(f"--folder {folder} is not a folder; pass a folder of images")
    check_host(host)
    session = ServeSession(model, weights, folder)
    session.model()  # a bad --model/--weights fails here, in one line, before the server starts
    port = port or free_port(host)
    run_server(create_serve_app(session), host, port,
               lambda url: err_console.print(f"camkit serve: open {url}  (Ctrl+C stops it)", soft_wrap=True))
