"""The ``camkit`` command-line tool (Typer).

Exit codes, the same for every command: 0 all good; 1 the run finished but some items (images,
records) were skipped, each listed on stderr; 2 a usage or input error stopped it (one line on
stderr); 3 an unexpected internal error (a bug: rerun with CAMKIT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import typer

from .evaluate_cmd import evaluate_command
from .explain_cmd import explain_command
from .finetune_cmd import finetune_command
from .models_cmd import models_command
from .sanity_cmd import sanity_command
from .serve_cmd import serve_command
from .view_cmd import view_command

app = typer.Typer(
    name="camkit",
    help="Class Activation Maps: heatmaps, boxes and localization benchmarks for CNNs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("explain")(explain_command)
app.command("models")(models_command)
app.command("evaluate")(evaluate_command)
app.command("finetune")(finetune_command)
app.command("sanity")(sanity_command)
app.command("serve")(serve_command)
app.command("view")(view_command)


def main() -> None:
    from camkit.openmp_tuning import apply_openmp_tuning

    from .common import keep_allocator_memory

    apply_openmp_tuning()  # before anything imports torch: libgomp reads it once, when it loads
    keep_allocator_memory()
    app()


if __name__ == "__main__":
    main()
