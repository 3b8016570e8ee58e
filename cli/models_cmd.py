"""``camkit models``: the registered models, or one model's classes."""

from __future__ import annotations

import json

import typer

from .common import fail, one_line_errors, out_console


@one_line_errors
def models_command(
    classes: bool = typer.Option(False, "--classes", help="Print the class index and name of each class of --model (one per line)."),
    model: str | None = typer.Option(None, "--model", "-m", help="With --classes: the registry name; default: the embedded efficientnet_lite0."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="With --classes: a checkpoint file (its class names), a weights name, or 'random'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the registry, or {model, classes: [{index, name}]})."),
) -> None:
    """List the registered models and what kind of CAM each gives, or a model's class names (--classes)."""
    if classes:
        _print_classes(model, weights, as_json)
        return
    if model is not None or weights is not None:
        raise fail("--model and --weights go with --classes (camkit models --classes --model NAME)")
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
    out_console.print("Also: timm/<name> for any timm model: exact CAM when its head is pool [+ LayerNorm] + linear, "
                      "gradient CAMs otherwise (class-token, attention-pool and MLP heads).", soft_wrap=True)


def _print_classes(model: str | None, weights: str | None, as_json: bool) -> None:
    """The class names a model's weights carry: the ones ``--class NAME`` accepts.

    The default weights' names come from the registry (nothing is built or downloaded); with
    ``--weights`` the model is loaded and its checkpoint's or weights' names are printed.
    """
    from camkit.models import DEFAULT_MODEL, get_spec, load_model

    spec = get_spec(model or DEFAULT_MODEL)
    if weights is None and spec.classes is not None:
        name, weights_name, names = spec.name, "default", spec.classes()
    else:
        m = load_model(spec.name if model is not None or weights is None else None, weights)
        name, weights_name, names = m.name, m.weights_name, m.categories
    if not names:
        hint = "pass a checkpoint trained with class names (--weights PATH), or use class indices"
        raise fail(f"{name} with {weights_name} weights has no class names; {hint}")
    if as_json:
        doc = {"model": name, "weights": weights_name, "classes": [{"index": i, "name": n} for i, n in enumerate(names)]}
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo("\n".join(f"{i}\t{n}" for i, n in enumerate(names)))
