"""notebooks/02_localization_benchmark.ipynb runs top to bottom on the real ILSVRC sample."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_localization_benchmark.ipynb"
SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


@pytest.fixture(scope="session")
def python3_kernel() -> str:
    """The ``python3`` kernel, installed into this interpreter's prefix when none is visible."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True, capture_output=True)
    return "python3"


@pytest.mark.slow
@pytest.mark.shared
def test_localization_notebook_runs(tmp_path, python3_kernel, monkeypatch):
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SAMPLE} (needs ../shared beside the repository)")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("CAMKIT_ILSVRC_SAMPLE", str(SAMPLE))  # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name=python3_kernel, resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on the first cell that errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    # Boxes on photos, the tau curves, the two conventions, the one-pass sweep: four figures.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    text = "".join(o.get("text", "") for o in outputs)
    assert "maxboxacc_v2:" in text and "CVPR16 (tau 0.2 of max)" in text and "wsol V1" in text
    assert "identical boxes: True" in text
    assert "Not comparable" in text and "56.40" in text
