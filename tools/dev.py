#!/usr/bin/env python3
"""Set up and run camkit from a fresh clone with nothing but python3.

    python3 tools/dev.py demo   # explain a bundled real photo with the embedded model -> camkit-out/demo
    python3 tools/dev.py test   # ruff and mypy (pyproject.toml's config), then the test suite: what CI runs
    python3 tools/dev.py bench  # the speed benchmarks under bench/

Each creates ./.venv (and installs camkit with its dev extras, building the C kernels) when
missing or when pyproject.toml, setup.py or a kernel's source changed since the last install.
Pass extra arguments after the command (e.g. `test -k lite0`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".camkit-install-stamp"


def _stamp() -> str:
    # what the install depends on: a change to any of these reinstalls (and rebuilds the C kernel)
    h = hashlib.sha256()
    for path in ("pyproject.toml", "setup.py", "tools/constraints.txt", "camkit/localize/_components.c", "camkit/_pilresample.c"):
        h.update((ROOT / path).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    if PY.exists() and STAMP.exists() and STAMP.read_text() == _stamp():
        return
    if not PY.exists():
        print(f"creating virtual environment {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing camkit and its dependencies (torch is large: a few minutes the first time) ...", flush=True)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "-qq", "-c", str(ROOT / "tools" / "constraints.txt"), "-e", f"{ROOT}[dev]"],
        check=True,
    )
    STAMP.write_text(_stamp())


# The `app`, `browser-tests` and `hf` extras of pyproject.toml: what the web app's tests and the Hugging Face
# adapter's test need in the venv.
BROWSER_TEST_PACKAGES = ("starlette", "uvicorn", "python-multipart", "playwright", "transformers")


def ensure_browser_test_deps() -> None:
    """Best effort, bounded and quiet: the app and hf extras + Playwright in the venv and, as root with apt-get,
    Debian's Chromium (Playwright drives the system browser; it never downloads one). Failing to
    install is not an error: the tests that need them then skip, naming what is missing."""
    probe = "import starlette, uvicorn, multipart, playwright, transformers"
    try:
        if subprocess.run([str(PY), "-c", probe], capture_output=True, timeout=60).returncode != 0:
            subprocess.run([str(PY), "-m", "pip", "install", "-qq", "-c", str(ROOT / "tools" / "constraints.txt"),
                            *BROWSER_TEST_PACKAGES], capture_output=True, timeout=600)
        if (not Path("/usr/bin/chromium").exists() and hasattr(os, "geteuid") and os.geteuid() == 0
                and shutil.which("apt-get")):
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], capture_output=True,
                           timeout=900, env=env)
    except (OSError, subprocess.SubprocessError):
        pass


def lint(env: dict[str, str]) -> int:
    """``ruff check .`` and ``mypy`` (their settings are pyproject.toml's); non-zero when either reports
    anything, with their output shown. mypy keeps its incremental cache in .mypy_cache (gitignored)."""
    code = 0
    for name, cmd in (("ruff", [str(VENV / "bin" / "ruff"), "check", "--quiet", "--output-format", "concise", "."]), ("mypy", [str(PY), "-m", "mypy"])):
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name} found problems:\n{r.stdout}{r.stderr}", end="", flush=True)
            code = r.returncode
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if cmd == "test":
        code = lint(env)
        if code:
            return code
        ensure_browser_test_deps()
        return subprocess.run([str(PY), "-m", "pytest", "-q", *rest], cwd=ROOT, env=env).returncode
    if cmd == "bench":
        code = 0
        for script in sorted((ROOT / "bench").glob("bench_*.py")):
            print(f"\n=== {script.name}", flush=True)
            code |= subprocess.run([str(PY), str(script), *rest], cwd=ROOT, env=env).returncode
        return code
    photo = subprocess.run(
        [str(PY), "-c", "import camkit.io.samples as s; print(s.sample_path('chelsea'))"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout.strip()
    out = ROOT / "camkit-out" / "demo"
    return subprocess.run(
        [str(VENV / "bin" / "camkit"), "explain", photo, "--topk", "3", "--out", str(out), *rest], cwd=ROOT, env=env
    ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
