"""``camkit explain`` over a folder on 2 gloo processes: the one-process document and files, byte for byte.

Ranks are started by :func:`test_distributed_core.launch` (torchrun's environment, a 127.0.0.1 store);
the one-process run has the same single intra-op thread, so maps are compared exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def _inputs(folder: Path) -> Path:
    """4 real photos (two under the same file name in two subfolders) and 2 broken files, discovered as
    ILSVRC..1, ILSVRC..4, a/broken_a.jpg, a/same.JPEG, b/same.JPEG, broken.jpg: with batches of 2, rank 1
    of 2 gets the middle batch, so each rank meets one broken file."""
    photos = sorted((SAMPLE / "val").glob("*.JPEG"))[:4]
    root = folder / "in"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for p in photos[:2]:
        shutil.copy(p, root / p.name)
    shutil.copy(photos[2], root / "a" / "same.JPEG")
    shutil.copy(photos[3], root / "b" / "same.JPEG")
    for bad in (root / "a" / "broken_a.jpg", root / "broken.jpg"):
        bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return root


def _argv(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "camkit", "explain", str(inputs), "--out", str(out), "--json", "--topk", "3",
            "--batch-size", "2"]


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}


@pytest.mark.shared
@pytest.mark.slow
def test_two_ranks_write_the_one_process_document_and_files(tmp_path):
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SAMPLE} (needs ../shared beside the repository)")
    from test_distributed_core import launch

    inputs = _inputs(tmp_path)
    one = subprocess.run(_argv(inputs, tmp_path / "one"), env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=240, check=False)
    assert one.returncode == 1, one.stderr[-2000:]  # two images skipped
    reference = json.loads(one.stdout)
    assert [Path(im["path"]).name for im in reference["images"]] == [
        "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000004.JPEG", "broken_a.jpg", "same.JPEG", "same.JPEG",
        "broken.jpg"]
    assert [("error" in im) for im in reference["images"]] == [False, False, True, False, False, True]

    workers = launch(_argv(inputs, tmp_path / "two"), timeout=240, teardown=False)
    assert [w.returncode for w in workers] == [1, 1], [w.stderr[-2000:] for w in workers]
    assert workers[1].stdout == ""  # one document, on rank 0's stdout
    # Each rank read only its share: rank 1 the middle batch (broken_a.jpg), rank 0 the others (broken.jpg).
    assert "broken_a.jpg" in workers[1].stderr and "broken.jpg" not in workers[1].stderr
    assert "broken.jpg" in workers[0].stderr and "broken_a.jpg" not in workers[0].stderr
    assert json.loads(workers[0].stdout) == reference
    # Same files, same bytes: the index, per-image JSON, overlays and raw maps; the two same.JPEG never collide.
    two, ref_files = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert two.keys() == ref_files.keys() and {"same.json", "same_1.json", "explanations.json"} <= two.keys()
    assert [name for name in two if two[name] != ref_files[name]] == []
    assert json.loads(two["explanations.json"])["complete"] is True
