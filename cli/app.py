"""The ``camkit`` command-line tool (Typer)."""

from __future__ import annotations

import typer

from .explain_cmd import explain_command, models_command

app = typer.Typer(
    name="camkit",
    help="Class Activation Maps: heatmaps, boxes and localization benchmarks for CNNs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("explain")(explain_command)
app.command("models")(models_command)


def _register_optional() -> None:
    """Commands that live in their own modules (added as they are built)."""
    import importlib

    for mod, name in (("evaluate_cmd", "evaluate"), ("finetune_cmd", "finetune")):
        try:
            m = importlib.import_module(f"camkit.cli.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"camkit.cli.{mod}":
                raise
            continue
        app.command(name)(getattr(m, f"{name}_command"))


_register_optional()


def main() -> None:
    from .common import keep_allocator_memory

    keep_allocator_memory()
    app()


if __name__ == "__main__":
    main()
