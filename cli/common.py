"""Shared CLI plumbing: one-line errors, stderr console, allocator setup, failure reports."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr (one line) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


# Library parameters whose CLI flag is not simply ``--`` + the name with dashes.
FLAG_NAMES: dict[str, str] = {
    "classes": "--class",
    "kind": "--dataset",
    "out_dir": "--out",
    "name": "--model",
}


def flag_for(param: str) -> str:
    """The CLI flag of a library parameter (``input_size`` -> ``--input-size``)."""
    return FLAG_NAMES.get(param, "--" + param.replace("_", "-"))


# A library hint such as "pass weights=PATH" names a parameter and a placeholder in capitals.
_PARAMETER_HINT = re.compile(r"\b([a-z][a-z_]*)=([A-Z][A-Z_]*)\b")


def flags_in(message: str) -> str:
    """A library message as the CLI says it: ``weights=PATH`` -> ``--weights PATH``."""
    return _PARAMETER_HINT.sub(lambda m: f"{flag_for(m.group(1))} {m.group(2)}", message)


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn camkit's errors (and anything unexpected) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from camkit.errors import CamkitError, ParameterError, UnknownClassError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except ParameterError as e:
            raise fail(e.render(flag_for(e.param) + " ")) from None
        except UnknownClassError as e:
            raise fail(f"{e} (`camkit models --classes` lists them)") from None
        except CamkitError as e:
            raise fail(flags_in(str(e))) from None
        except OSError as e:  # a file the command reads or writes: the system's reason, and where to look
            if os.environ.get("CAMKIT_DEBUG"):
                raise
            if isinstance(e, BrokenPipeError):  # `camkit ... | head`: the reader left early
                raise fail("the output pipe was closed before the command finished", 1) from None
            where = f" {e.filename}" if e.filename else ""
            raise fail(f"cannot read or write{where}: {e.strerror or e}; check that path (a folder in the way, "
                       "permissions, free space) or choose another --out") from None
        except Exception as e:  # never a traceback on the CLI unless asked for
            if os.environ.get("CAMKIT_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise fail(f"unexpected {type(e).__name__}: {msg} (set CAMKIT_DEBUG=1 for the traceback)", 3) from None

    return wrapper


def keep_allocator_memory() -> None:
    """Apply camkit's glibc malloc tuning at start-up (see :mod:`camkit.malloc_tuning`; honours
    ``CAMKIT_NO_MALLOC_TUNING=1``). The library applies it on its first heavy call anyway; doing it
    before anything is allocated lets the whole process use it."""
    from camkit.malloc_tuning import apply_malloc_tuning

    apply_malloc_tuning()


def report_skipped(error: Exception) -> None:
    """One ``error: ...`` line on stderr for an item the run skips and goes on without."""
    err_console.print(f"[bold red]error:[/] {error}", markup=True, soft_wrap=True)


def exit_code_for(skipped: int, total: int) -> int:
    """The exit-code rule for a run over ``total`` items of which ``skipped`` failed: 0 none,
    1 some (the run finished; each was listed), 2 all of them (nothing was done: an input error).
    Prints the ``N of M`` summary line on stderr when there was more than one item."""
    if skipped and total > 1:
        err_console.print(f"{skipped} of {total} items were skipped (listed above)", soft_wrap=True)
    return 0 if not skipped else (1 if skipped < total else 2)


def find_images_reporting(inputs, on_error):
    """``camkit.io.find_images`` that reports an input finding nothing (``on_error(input, error)``) and goes on."""
    from camkit.io import find_images

    return find_images(inputs, on_error=on_error)
