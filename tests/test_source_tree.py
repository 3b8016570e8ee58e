"""The checkout works as a source tree without the editable install's finder (e.g. beside a wheel)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_camkit_cli_importable_from_checkout_without_editable_finder():
    # `python -S` skips site-packages' .pth files, so the editable install's finder (which maps
    # camkit.cli -> cli/) is absent: this is what a wheel install sees when run from the repo root.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    code = "import camkit.cli.app as a, camkit; print(a.__file__); print(camkit.__file__)"
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cli_file, pkg_file = r.stdout.split()
    assert Path(cli_file) == ROOT / "cli" / "app.py"
    assert Path(pkg_file) == ROOT / "camkit" / "__init__.py"
