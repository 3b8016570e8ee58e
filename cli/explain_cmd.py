"""``camkit explain``: top-k classes, CAMs and boxes per image; optional output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import err_console, exit_code_for, fail, find_images_reporting, one_line_errors, out_console, report_skipped


@one_line_errors
def explain_command(
    images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry name (see `camkit models`); default: the embedded efficientnet_lite0."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Checkpoint file, a torchvision weights name, or 'random'."),
    topk: int = typer.Option(5, "--topk", "-k", min=1, help="Explain the k highest-scoring classes (at most the model's number of classes)."),
    classes: Optional[List[str]] = typer.Option(None, "--class", "-c", help="Explain this class (index or name); repeatable. Overrides --topk."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write per image: overlay PNG, raw maps .npy (first 10 classes) and JSON, plus the index explanations.json. A previous explain run there is replaced; other files are refused without --overwrite."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an --out folder that holds other files (they are kept; same-named files are replaced)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (and nothing else)."),
    resize_mode: str = typer.Option("crop", "--resize-mode", help="'crop': the weights' resize+centre crop; 'squash': whole image to the input square (WSOL protocol)."),
    tau: float = typer.Option(0.2, "--tau", min=0.0, max=1.0, help="CVPR16 box threshold, fraction of the map's max."),
    interpolation: str = typer.Option("bicubic", "--interpolation", help="Map upsampling: bicubic or bilinear."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, max=1024, help="Images per forward pass (and Score-CAM's masked inputs per pass)."),
    method: Optional[str] = typer.Option(None, "--method", help="cam (default where exact), gradcam, gradcam++, xgradcam, layercam, hirescam, scorecam, eigencam."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Target layer for non-CAM methods (module name, e.g. layer4); default: automatic."),
) -> None:
    """Top-k classes, their class activation maps and CVPR16 boxes for each image.

    Exit code 0 when every image was explained, 1 when some were skipped (listed on stderr and as
    {"path", "error"} entries of the --json document), 2 when none could be or an option is wrong.
    """
    from contextlib import nullcontext

    if resize_mode not in ("crop", "squash"):
        raise fail(f"--resize-mode must be 'crop' or 'squash', not {resize_mode!r}")
    if interpolation not in ("bicubic", "bilinear"):
        raise fail(f"--interpolation must be 'bicubic' or 'bilinear', not {interpolation!r}")
    if method is not None:
        from camkit.cam.methods import method_info

        method_info(method)  # unknown names fail here, before any work
    with _output_folder(out, overwrite) if out is not None else nullcontext() as folder:
        records: dict[str, dict] = {}  # input-ordered: a discovery error sits where its input was typed
        failures = [0]
        paths = _discover(images, records, failures)
        total = len(paths) + failures[0]
        if not paths:  # nothing to explain: an input error, but the document still lists each input
            if as_json:
                typer.echo(json.dumps({"model": None, "weights": None, "method": method, "images": list(records.values())}, indent=2))
            raise typer.Exit(2)
        doc = _explain_all(paths, records, failures, folder, model, weights, topk, classes, as_json, resize_mode,
                           tau, interpolation, batch_size, method, layer)
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
        if folder is not None:
            folder.finish(doc)
            err_console.print(f"wrote overlays, maps and JSON to {out}", soft_wrap=True)
    raise typer.Exit(exit_code_for(failures[0], total))


def _discover(images: list[str], records: dict[str, dict], failures: list[int]) -> list:
    """Image paths of every input, in order; an input that finds nothing becomes an error record."""
    from camkit.errors import ImageError

    paths = []
    seen = set()

    def skipped(item: str, e: ImageError) -> None:
        failures[0] += 1
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


def _explain_all(paths, records, failures, folder, model, weights, topk, classes, as_json, resize_mode, tau,
                 interpolation, batch_size, method, layer) -> dict:
    from camkit.cam.engine import resolve_class
    from camkit.errors import ImageError
    from camkit.explanation import MAX_SAVED_MAPS, check_topk, explain_batch
    from camkit.io import load_image
    from camkit.io.explanation_folder import output_names, unique_stems
    from camkit.models import load_model

    m = load_model(model, weights)
    spec: object = topk
    if classes:
        spec = [resolve_class(c, m.categories, m.num_classes) for c in classes]
    else:
        check_topk(m, topk)
    per_image = len(spec) if isinstance(spec, list) else topk
    stems = dict(zip(map(str, paths), unique_stems([str(p) for p in paths])))
    method_name = method or ("cam" if m.cam_kind != "gradient" else "gradcam")
    header = {"model": m.name, "weights": m.weights_name, "method": method_name}
    if folder is not None:
        folder.plan(list(stems.values()), header)
        if per_image > MAX_SAVED_MAPS:
            err_console.print(
                f"note: maps and overlays are saved for the first {MAX_SAVED_MAPS} of {per_image} classes of each "
                f"image; the JSON files list all {per_image}", soft_wrap=True)
    for start in range(0, len(paths), batch_size):
        loaded, kept = [], []
        for p in paths[start : start + batch_size]:
            try:
                loaded.append(load_image(p))
                kept.append(str(p))
            except ImageError as e:
                failures[0] += 1
                report_skipped(e)
                records[str(p)] = {"path": str(p), "error": str(e)}
        if not loaded:
            continue
        for exp in explain_batch(m, loaded, kept, spec, resize_mode, interpolation, tau, method, layer, batch_size):
            rec = exp.to_dict()
            if folder is not None:
                stem = stems[exp.path]
                exp.save(folder.out_dir, stem, model=m.name)
                rec["saved_maps"] = exp.saved_maps
                rec["outputs"] = output_names(stem)
            records[exp.path] = rec
            if not as_json:
                _print_table(exp)
    return dict(header, images=[r for r in records.values() if r])


def _print_table(exp) -> None:
    from rich.table import Table

    t = Table(title=f"{Path(exp.path).name}  ({exp.width}x{exp.height})", title_justify="left", show_edge=False)
    for col in ("rank", "class", "label", "score", "box x0,y0,x1,y1"):
        t.add_column(col, justify="right" if col in ("rank", "class", "score") else "left")
    for r, (c, lab, s, b) in enumerate(zip(exp.class_indices, exp.labels, exp.scores, exp.boxes), 1):
        t.add_row(str(r), str(int(c)), lab, f"{s:.3f}", ",".join(str(int(v)) for v in b))
    out_console.print(t)
