"""camkit.openmp_tuning: the CLI shortens libgomp's idle spin before torch loads it, leaves a user's own
OpenMP settings alone, and can be switched off. Read back from libgomp itself (``OMP_DISPLAY_ENV``
makes it print the values it took when it loaded)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from camkit import openmp_tuning
from camkit.openmp_tuning import SPIN_COUNT, apply_openmp_tuning

_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", openmp_tuning.OPT_OUT_ENV)


def _libgomp_spincount(code: list[str], **env: str) -> str:
    """The spin count libgomp reports at load in a fresh ``python`` running ``code`` (argv after the interpreter)."""
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    out = subprocess.run([sys.executable, *code], env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"GOMP_SPINCOUNT = '([^']*)'", out.stderr)
    if found is None:
        pytest.skip("this torch does not run on GNU OpenMP (libgomp printed no settings)")
    return found.group(1)


_TUNED_THEN_TORCH = ["-c", "from camkit.openmp_tuning import apply_openmp_tuning as a; a(); import torch; torch.ones(64, 64).sum()"]


def test_cli_sets_the_spin_count_before_torch_loads() -> None:
    assert _libgomp_spincount(["-m", "camkit", "models"]) == str(SPIN_COUNT)


@pytest.mark.parametrize(("env", "want"), [
    ({"GOMP_SPINCOUNT": "7"}, "7"),  # the user's value
    ({openmp_tuning.OPT_OUT_ENV: "1"}, "300000"),  # libgomp's default (its manual)
    ({openmp_tuning.OPT_OUT_ENV: "0"}, str(SPIN_COUNT)),
])
def test_user_settings_win(env: dict[str, str], want: str) -> None:
    assert _libgomp_spincount(_TUNED_THEN_TORCH, **env) == want


def test_a_wait_policy_is_left_to_libgomp() -> None:
    # ACTIVE without a spin count means "spin (almost) forever" to libgomp: not overridden
    assert _libgomp_spincount(_TUNED_THEN_TORCH, OMP_WAIT_POLICY="ACTIVE") != str(SPIN_COUNT)


def test_too_late_once_torch_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch  # noqa: F401 - libgomp is loaded: a value set now would never be read

    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert apply_openmp_tuning() is False
    assert "GOMP_SPINCOUNT" not in os.environ


def test_sets_the_variable_when_torch_is_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh CLI process (restored after the test)
    assert apply_openmp_tuning() is True
    assert os.environ["GOMP_SPINCOUNT"] == str(SPIN_COUNT)
