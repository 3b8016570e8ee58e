"""``camkit explain``: top-k classes, CAMs and boxes per image; optional output folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import err_console, exit_code_for, fail, find_images_reporting, one_line_errors, out_console, report_skipped


@one_line_errors
def explain_command(
    images: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name (see `camkit models`); default: the embedded efficientnet_lite0."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Checkpoint file, a torchvision weights name, or 'random'."),
    topk: int = typer.Option(5, "--topk", "-k", min=1, help="Explain the k highest-scoring classes (at most the model's number of classes)."),
    classes: list[str] | None = typer.Option(None, "--class", "-c", help="Explain this class (index or name); repeatable. Overrides --topk."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write per image: overlay PNG, raw maps .npy (first 10 classes) and JSON, plus the index explanations.json. A previous explain run there is replaced; other files are refused without --overwrite."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an --out folder that holds other files (they are kept; same-named files are replaced)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (and nothing else)."),
    resize_mode: str = typer.Option("crop", "--resize-mode", help="'crop': the weights' resize+centre crop; 'squash': whole image to the input square (WSOL protocol)."),
    tau: float = typer.Option(0.2, "--tau", min=0.0, max=1.0, help="CVPR16 box threshold, fraction of the map's max."),
    interpolation: str = typer.Option("bicubic", "--interpolation", help="Map upsampling: bicubic or bilinear."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, max=1024, help="Images per forward pass (and Score-CAM's masked inputs per pass)."),
    method: str | None = typer.Option(None, "--method", help="cam (default where exact), gradcam, gradcam++, scorecam, ablationcam, ... (every method: the README's methods table)."),
    layer: list[str] | None = typer.Option(None, "--layer", help="Target layer for non-CAM methods (module name, e.g. layer4); repeat to fuse several; default: automatic."),
    smooth: str | None = typer.Option(None, "--smooth", help="aug (test-time flips x scales, mapped back exactly) or eigen (first principal component)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the methods that draw noise or random maps."),
) -> None:
    """Top-k classes, their class activation maps and CVPR16 boxes for each image.

    Exit code 0 when every image was explained, 1 when some were skipped (listed on stderr and as
    {"path", "error"} entries of the --json document), 2 when none could be or an option is wrong.
    """
    if resize_mode not in ("crop", "squash"):
        raise fail(f"--resize-mode must be 'crop' or 'squash', not {resize_mode!r}")
    if interpolation not in ("bicubic", "bilinear"):
        raise fail(f"--interpolation must be 'bicubic' or 'bilinear', not {interpolation!r}")
    if method is not None:
        from camkit.cam.methods import method_info

        method_info(method)  # unknown names fail here, before any work
    from camkit.cam.methods import check_smooth, layer_spec

    layers, smooth = layer_spec(layer), check_smooth(smooth)
    method_options = {"smooth": smooth, "seed": seed}
    from camkit.distributed import process_group

    # Under torchrun (WORLD_SIZE > 1) every process runs this command: the batches of images are dealt
    # out to the ranks, each writes its images' files, rank 0 holds the folder, writes the index and prints.
    with process_group() as group:
        folder = _open_folder(out, overwrite, group) if out is not None else None
        try:
            records: dict[str, dict] = {}  # input-ordered: a discovery error sits where its input was typed
            failures = [0]
            paths = _discover(images, records, failures, report=group.is_main)
            total = len(paths) + failures[0]
            if not paths:  # nothing to explain: an input error, but the document still lists each input
                if as_json and group.is_main:
                    typer.echo(json.dumps({"model": None, "weights": None, "method": method, "images": list(records.values())}, indent=2))
                raise typer.Exit(2)
            doc = _explain_all(paths, records, failures, folder, out, group, model, weights, topk, classes, as_json,
                               resize_mode, tau, interpolation, batch_size, method, layers, method_options)
            if group.is_main:
                if as_json:
                    typer.echo(json.dumps(doc, indent=2))
                if folder is not None:
                    folder.finish(doc)
                    err_console.print(f"wrote overlays, maps and JSON to {out}", soft_wrap=True)
        finally:
            if folder is not None:
                folder.close()
    if group.is_main:
        raise typer.Exit(exit_code_for(failures[0], total))  # prints the "N of M skipped" line
    raise typer.Exit(0 if not failures[0] else 1 if failures[0] < total else 2)  # the same rule, silently


def _open_folder(out: Path, overwrite: bool, group):
    """Rank 0 opens (checks, locks, clears) the output folder; the others wait for it and get None.

    A refusal is printed by rank 0; every rank then exits with its code.
    """
    opened = {}

    def open_on_main() -> int | None:
        try:
            opened["folder"] = _output_folder(out, overwrite)
        except typer.Exit as e:
            return e.exit_code
        return None

    code = group.on_main(open_on_main)
    if code is not None:
        raise typer.Exit(code)
    return opened.get("folder")


def _discover(images: list[str], records: dict[str, dict], failures: list[int], report: bool = True) -> list:
    """Image paths of every input, in order; an input that finds nothing becomes an error record
    (printed on stderr when ``report``)."""
    from camkit.errors import ImageError

    paths = []
    seen = set()

    def skipped(item: str, e: ImageError) -> None:
        failures[0] += 1
        if report:
            report_skipped(e)
        records[f"\0input:{len(records)}"] = {"path": item, "error": str(e)}

    for item in images:
        for p in find_images_reporting([item], skipped):
            if p.resolve() not in seen:
                seen.add(p.resolve())
                paths.append(p)
                records[str(p)] = {}  # placeholder keeps the input order
    return paths


def _output_folder(out: Path, overwrite: bool):
    from camkit.io.explanation_folder import ExplanationFolder, ForeignFilesError

    try:
        return ExplanationFolder(out, overwrite, "camkit explain").open()
    except ForeignFilesError as e:
        raise fail(e.render("--overwrite")) from None


def _explain_all(paths, records, failures, folder, out, group, model, weights, topk, classes, as_json, resize_mode, tau,
                 interpolation, batch_size, method, layer, method_options) -> dict:
    """Explain ``paths`` into ``records`` (input order); in a process group each rank explains its share
    of the batches (:func:`camkit.distributed.shard`: the fixed batches of ``batch_size``, so every image is
    computed with the same neighbours as in one process) and every rank gets everyone's records."""
    from camkit.cam.engine import resolve_class
    from camkit.explanation import MAX_SAVED_MAPS, check_topk
    from camkit.io.explanation_folder import unique_stems
    from camkit.models import load_model

    m = load_model(model, weights)
    spec: object = topk
    if classes:
        spec = [resolve_class(c, m.categories, m.num_classes) for c in classes]
    else:
        check_topk(m, topk)
    per_image = len(spec) if isinstance(spec, list) else topk
    stems = dict(zip(map(str, paths), unique_stems([str(p) for p in paths]), strict=True))  # from all inputs: never collide
    from camkit.cam.methods import default_method

    method_name = method or default_method(m, layer)
    header = {"model": m.name, "weights": m.weights_name, "method": method_name}

    def plan() -> None:
        folder.plan(list(stems.values()), header)
        if per_image > MAX_SAVED_MAPS:
            err_console.print(
                f"note: maps and overlays are saved for the first {MAX_SAVED_MAPS} of {per_image} classes of each "
                f"image; the JSON files list all {per_image}", soft_wrap=True)

    if out is not None:
        group.on_main(plan)  # the index lists every planned file before any rank writes one
    batches = group.share([paths[s : s + batch_size] for s in range(0, len(paths), batch_size)])
    tables = not as_json and not group.distributed  # several ranks: rank 0 prints all tables at the end
    mine, my_failures = group.run(lambda: _explain_batches(batches, m, spec, stems, out, resize_mode, interpolation, tau,
                                                           method, layer, batch_size, tables, report=True,
                                                           method_options=method_options))
    for part, n_failed in group.all_gather((mine, my_failures)) if group.distributed else [(mine, my_failures)]:
        records.update(part)
        failures[0] += n_failed
    if group.distributed and group.is_main and not as_json:
        for rec in records.values():
            if rec.get("predictions") is not None:
                _print_table(rec)
    return dict(header, images=[r for r in records.values() if r])


def _explain_batches(batches, m, spec, stems, out, resize_mode, interpolation, tau, method, layer, batch_size, tables,
                     report, method_options=None) -> tuple[dict[str, dict], int]:
    """Explain each batch of paths; returns the records by path and how many images could not be read."""
    from camkit.errors import ImageError
    from camkit.explanation import explain_batch
    from camkit.io import load_image
    from camkit.io.explanation_folder import output_names

    records: dict[str, dict] = {}
    failed = 0
    for chunk in batches:
        loaded, kept = [], []
        for p in chunk:
            try:
                loaded.append(load_image(p))
                kept.append(str(p))
            except ImageError as e:
                failed += 1
                if report:
                    report_skipped(e)
                records[str(p)] = {"path": str(p), "error": str(e)}
        if not loaded:
            continue
        for exp in explain_batch(m, loaded, kept, spec, resize_mode, interpolation, tau, method, layer, batch_size,
                                 **(method_options or {})):
            rec = exp.to_dict()
            assert exp.path is not None  # explained from files, each with its path
            if out is not None:
                stem = stems[exp.path]
                exp.save(out, stem, model=m.name)
                rec["saved_maps"] = exp.saved_maps
                rec["outputs"] = output_names(stem)
            records[exp.path] = rec
            if tables:
                _print_table(rec)
    return records, failed


def _print_table(rec: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{Path(rec['path']).name}  ({rec['width']}x{rec['height']})", title_justify="left", show_edge=False)
    for col in ("rank", "class", "label", "score", "box x0,y0,x1,y1"):
        t.add_column(col, justify="right" if col in ("rank", "class", "score") else "left")
    for r, p in enumerate(rec["predictions"], 1):
        t.add_row(str(r), str(p["class_index"]), p["label"], f"{p['score']:.3f}", ",".join(str(v) for v in p["box"]))
    out_console.print(t)
