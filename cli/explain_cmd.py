"""``camkit explain`` and ``camkit models``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import err_console, fail, one_line_errors, out_console


@one_line_errors
def explain_command(
    images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry name (see `camkit models`); default: the embedded efficientnet_lite0."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Checkpoint file, a torchvision weights name, or 'random'."),
    topk: int = typer.Option(5, "--topk", "-k", min=1, help="Explain the k highest-scoring classes."),
    classes: Optional[List[str]] = typer.Option(None, "--class", "-c", help="Explain this class (index or name); repeatable. Overrides --topk."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write per image: overlay PNG, raw maps .npy and JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (and nothing else)."),
    resize_mode: str = typer.Option("crop", "--resize-mode", help="'crop': the weights' resize+centre crop; 'squash': whole image to the input square (WSOL protocol)."),
    tau: float = typer.Option(0.2, "--tau", min=0.0, max=1.0, help="CVPR16 box threshold, fraction of the map's max."),
    interpolation: str = typer.Option("bicubic", "--interpolation", help="Map upsampling: bicubic or bilinear."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward pass (and Score-CAM's masked inputs per pass)."),
    method: Optional[str] = typer.Option(None, "--method", help="cam (default where exact), gradcam, gradcam++, xgradcam, layercam, hirescam, scorecam, eigencam."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Target layer for non-CAM methods (module name, e.g. layer4); default: automatic."),
) -> None:
    """Top-k classes, their class activation maps and CVPR16 boxes for each image."""
    from camkit.cam.engine import resolve_class
    from camkit.errors import ImageError
    from camkit.explanation import explain_batch
    from camkit.io import find_images, load_image
    from camkit.models import load_model

    if resize_mode not in ("crop", "squash"):
        raise fail(f"--resize-mode must be 'crop' or 'squash', not {resize_mode!r}")
    if interpolation not in ("bicubic", "bilinear"):
        raise fail(f"--interpolation must be 'bicubic' or 'bilinear', not {interpolation!r}")
    if method is not None:
        from camkit.cam.methods import method_info

        method_info(method)  # unknown names fail here, before any work
    paths = find_images(images)
    m = load_model(model, weights)
    spec: object = topk
    if classes:
        spec = [resolve_class(c, m.categories, m.num_classes) for c in classes]

    records: list[dict] = []
    stems: dict[str, int] = {}
    failures = 0
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        loaded, kept = [], []
        for p in chunk:
            try:
                loaded.append(load_image(p))
                kept.append(str(p))
            except ImageError as e:
                failures += 1
                err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
                records.append({"path": str(p), "error": str(e)})
        if not loaded:
            continue
        for exp in explain_batch(m, loaded, kept, spec, resize_mode, interpolation, tau, method, layer, batch_size):
            records.append(exp.to_dict())
            if out is not None:
                stem = _unique_stem(stems, Path(exp.path).stem)
                exp.save(out, stem, model=m.name)
            if not as_json:
                _print_table(exp)
    doc = {"model": m.name, "weights": m.weights_name, "method": method or ("cam" if m.cam_kind != "gradient" else "gradcam"), "images": records}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    if out is not None:
        (out / "explanations.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if not as_json:
            err_console.print(f"wrote overlays, maps and JSON to {out}")
    if failures:
        if len(paths) > 1:
            err_console.print(f"{failures} of {len(paths)} images could not be read (listed above)")
        raise typer.Exit(1 if failures < len(paths) else 2)


def _unique_stem(used: dict[str, int], stem: str) -> str:
    """Two inputs with the same file name (from different folders) must not overwrite each other."""
    n = used.get(stem, 0)
    used[stem] = n + 1
    return stem if n == 0 else f"{stem}_{n}"


def _print_table(exp) -> None:
    from rich.table import Table

    t = Table(title=f"{Path(exp.path).name}  ({exp.width}x{exp.height})", title_justify="left", show_edge=False)
    for col in ("rank", "class", "label", "score", "box x0,y0,x1,y1"):
        t.add_column(col, justify="right" if col in ("rank", "class", "score") else "left")
    for r, (c, lab, s, b) in enumerate(zip(exp.class_indices, exp.labels, exp.scores, exp.boxes), 1):
        t.add_row(str(r), str(int(c)), lab, f"{s:.3f}", ",".join(str(int(v)) for v in b))
    out_console.print(t)


@one_line_errors
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON."),
) -> None:
    """List the registered models and what kind of CAM each gives."""
    from camkit.models import list_models

    specs = list_models()
    if as_json:
        typer.echo(json.dumps([{"name": s.name, "source": s.source, "cam_kind": s.cam_kind, "description": s.description} for s in specs], indent=2))
        return
    from rich.table import Table

    t = Table(show_edge=False)
    for col in ("name", "source", "CAM", "description"):
        t.add_column(col)
    for s in specs:
        t.add_row(s.name, s.source, s.cam_kind_text, s.description)
    out_console.print(t)
    out_console.print("Also: timm/<name> for any timm model whose head is global average pool + linear.")
