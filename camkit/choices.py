"""Checking a string argument against a fixed vocabulary, typed as that vocabulary's ``Literal``."""

from __future__ import annotations

from typing import TypeVar

from camkit.errors import ParameterError

L = TypeVar("L", bound=str)


def one_of(param: str, value: str, choices: tuple[L, ...], what: str) -> L:
    """``value`` as the member of ``choices`` it equals; otherwise :class:`~camkit.errors.ParameterError`
    ("``param='x'`` is not ``what``; use one of a, b")."""
    for choice in choices:
        if value == choice:
            return choice
    raise ParameterError(param, value, f"is not {what}; use one of {', '.join(choices)}")
