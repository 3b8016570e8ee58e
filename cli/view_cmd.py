"""``camkit view``: browse ``camkit evaluate --out`` folders in a local web page (read-only), or write
their self-contained ``report.html``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import err_console, fail, one_line_errors, out_console
from .serve_cmd import check_host, require_app_extra


@one_line_errors
def view_command(
    runs: list[Path] = typer.Argument(..., help="One run folder (camkit evaluate --out), or two to compare (same dataset)."),
    html: bool = typer.Option(False, "--html", help="Write RUN/report.html (self-contained, opens from a file: URL) for each run and exit."),
    root: Path | None = typer.Option(None, "--root", help="The dataset folder the run evaluated (default: found from the run's summary)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Its layout: ilsvrc, cub, wsol, csv (default: from the run)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="The boxes file/folder, as given to camkit evaluate."),
    split: str | None = typer.Option(None, "--split", help="cub/wsol split, as given to camkit evaluate."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Weights to recompute maps with (default: the run's)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 127.0.0.1 keeps the page on this machine."),
    port: int = typer.Option(8766, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
) -> None:
    """Images of a run sorted by IoU, their GT and predicted boxes and maps, the BoxAcc-vs-tau curve with a live cursor."""
    from camkit.app.rundir import read_run_dir

    if not 1 <= len(runs) <= 2:
        raise fail(f"give one or two run folders, not {len(runs)}")
    dirs = [read_run_dir(r) for r in runs]
    if html:
        from camkit.app.report_html import write_report_html

        for d in dirs:
            out_console.print(str(write_report_html(d.path)))
        return
    require_app_extra()
    from camkit.app.dataset_locate import locate_images
    from camkit.app.http_common import free_port, run_server
    from camkit.app.run_maps import RunMaps, load_run_model
    from camkit.app.view_app import create_view_app

    if len(dirs) == 2:
        ids_a = {str(r.get("id")) for r in dirs[0].records}
        if not ids_a & {str(r.get("id")) for r in dirs[1].records}:
            raise fail(f"{runs[0]} and {runs[1]} share no image; compare two runs on the same dataset")
    maps = []
    model_cache: dict = {}
    for d in dirs:
        paths = locate_images(d, root, dataset, annotations, split)
        key = (d.model.get("name"), d.model.get("weights"), weights)
        if key not in model_cache:  # a bad model/weights fails now, in one line; two runs of one model share it
            model_cache[key] = load_run_model(d, weights)
        maps.append(RunMaps(d, paths, model_cache[key]))
    check_host(host)
    port = port or free_port(host)
    run_server(create_view_app(dirs, maps), host, port,
               lambda url: err_console.print(f"camkit view: open {url}  (Ctrl+C stops it)", soft_wrap=True))
