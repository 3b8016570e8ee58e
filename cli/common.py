"""Shared CLI plumbing: one-line errors, stderr console, allocator setup."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

import typer
from rich.console import Console

F = TypeVar("F", bound=Callable)

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` on stderr (one line) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


# Library parameters whose CLI flag is not simply ``--`` + the name with dashes.
FLAG_NAMES: dict[str, str] = {
    "classes": "--class",
    "out_dir": "--out",
}


def flag_for(param: str) -> str:
    """The CLI flag of a library parameter (``input_size`` -> ``--input-size``)."""
    return FLAG_NAMES.get(param, "--" + param.replace("_", "-"))


def one_line_errors(fn: F) -> F:
    """Turn camkit's errors (and anything unexpected) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from camkit.errors import CamkitError, ParameterError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except ParameterError as e:
            raise fail(e.render(flag_for(e.param) + " ")) from None
        except CamkitError as e:
            raise fail(str(e)) from None
        except Exception as e:  # never a traceback on the CLI unless asked for
            if os.environ.get("CAMKIT_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise fail(f"unexpected {type(e).__name__}: {msg} (set CAMKIT_DEBUG=1 for the traceback)", 3) from None

    return wrapper  # type: ignore[return-value]


def keep_allocator_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS after every batch.

    Large CPU forwards otherwise spend most of their time in page faults (design.md §8: a batch-32
    forward ran ~2x slower in a fresh process). Only glibc has ``mallopt``; elsewhere this is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        pass
