"""`camkit explain` hardening: --out checked before any work and locked, previous runs replaced
cleanly, own outputs never re-explained, partial failures exit 1 with the document, bounded options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.io.run_lock import RunLock
from camkit.io.samples import sample_path

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture()
def no_model(monkeypatch):
    """Fail loudly if the model is loaded: the checks under test must come before it."""
    import camkit.models

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the option was checked")

    monkeypatch.setattr(camkit.models, "load_model", boom)


@pytest.mark.parametrize("kind", ["file", "proc", "under_a_file"])
def test_unusable_out_fails_before_the_model_with_one_line(tmp_path, no_model, kind):
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    out = {"file": a_file, "proc": Path("/proc/camkit-x"), "under_a_file": a_file / "sub"}[kind]
    r = run("explain", str(sample_path("chelsea")), "--out", str(out), "--json")
    assert r.exit_code == 2
    line = one_error_line(r)
    assert str(out) in line and "unexpected" not in line
    assert r.stdout == ""


def test_out_locked_by_another_run_is_refused_naming_the_holder(tmp_path, no_model):
    out = tmp_path / "out"
    with RunLock(out, "camkit explain"):
        # a lock held by this process through another descriptor: flock refuses the second one
        r = run("explain", str(sample_path("chelsea")), "--out", str(out))
    assert r.exit_code == 2
    line = one_error_line(r)
    assert f"{out} is in use by pid {os.getpid()} (camkit explain)" in line


def test_foreign_files_in_out_are_refused_unless_overwrite(tmp_path, no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    r = run("explain", str(sample_path("chelsea")), "--out", str(out))
    assert r.exit_code == 2
    line = one_error_line(r)
    assert str(out) in line and "thesis.docx" in line and "--overwrite" in line
    assert (out / "thesis.docx").read_text() == "mine"


def test_overwrite_writes_beside_foreign_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    r = run("explain", str(sample_path("chelsea")), "--topk", "1", "--out", str(out), "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert (out / "thesis.docx").read_text() == "mine" and (out / "chelsea_cam.png").is_file()


def test_rerun_into_previous_run_replaces_its_files_and_index_matches(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("chelsea", "coffee"):
        shutil.copy(sample_path(n), src / f"{n}.png")
    out = tmp_path / "out"
    assert run("explain", str(src), "--topk", "1", "--out", str(out)).exit_code == 0
    (src / "coffee.png").unlink()
    r = run("explain", str(src), "--topk", "1", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    index = json.loads((out / "explanations.json").read_text())
    listed = {f for im in index["images"] for f in im["outputs"].values()}
    on_disk = {p.name for p in out.iterdir() if not p.name.startswith(".")} - {"explanations.json"}
    assert listed == on_disk == {"chelsea_cam.png", "chelsea_maps.npy", "chelsea.json"}
    assert index["complete"] is True


def test_interrupted_run_leaves_an_index_that_covers_its_files(tmp_path):
    out = tmp_path / "out"
    src = tmp_path / "in"
    src.mkdir()
    for n in ("chelsea", "coffee", "astronaut"):
        shutil.copy(sample_path(n), src / f"{n}.png")
    assert run("explain", str(src), "--topk", "1", "--out", str(out), "--batch-size", "1").exit_code == 0
    # Kill a second run after its first image's files are written (SIGKILL from the save hook).
    code = (
        "import os, signal, sys\n"
        "import camkit.explanation as ex\n"
        "orig = ex.Explanation.save\n"
        "def save(self, *a, **k):\n"
        "    r = orig(self, *a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "ex.Explanation.save = save\n"
        "from camkit.cli.app import app\n"
        "sys.argv = ['camkit'] + sys.argv[1:]\n"
        "app()\n"
    )
    p = subprocess.run([sys.executable, "-c", code, "explain", str(src / "coffee.png"), "--topk", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    index = json.loads((out / "explanations.json").read_text())
    assert index["complete"] is False
    planned = set(index["planned_outputs"])
    on_disk = {p.name for p in out.iterdir() if not p.name.startswith(".")} - {"explanations.json"}
    assert on_disk <= planned  # nothing of the first run is left mixed in
    r = run("explain", str(src / "chelsea.png"), "--topk", "1", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    on_disk = {p.name for p in out.iterdir() if not p.name.startswith(".")} - {"explanations.json"}
    assert on_disk == {"chelsea_cam.png", "chelsea_maps.npy", "chelsea.json"}


def test_out_inside_the_input_folder_is_not_re_explained(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(sample_path("chelsea"), src / "chelsea.png")
    for _ in range(2):
        r = run("explain", str(src), "--topk", "1", "--out", str(src / "cams"), "--json")
        assert r.exit_code == 0, r.stderr
        assert [Path(i["path"]).name for i in json.loads(r.stdout)["images"]] == ["chelsea.png"]
    # the overlays written beside the photos (out == input folder) are not inputs either
    for _ in range(2):
        r = run("explain", str(src), "--topk", "1", "--out", str(src / "cams" / ".."), "--json", "--overwrite")
        assert r.exit_code == 0, r.stderr
        assert [Path(i["path"]).name for i in json.loads(r.stdout)["images"]] == ["chelsea.png"]


def test_missing_path_among_good_files_goes_on_and_exits_1_with_document(tmp_path):
    missing = tmp_path / "nope.jpg"
    r = run("explain", str(sample_path("chelsea")), str(missing), "--topk", "1", "--json")
    assert r.exit_code == 1, r.stderr
    images = json.loads(r.stdout)["images"]
    assert [("error" in i) for i in images] == [False, True]
    assert images[1]["path"] == str(missing) and "no such file" in images[1]["error"]
    assert "no such file" in r.stderr and "1 of 2" in r.stderr


def test_only_bad_paths_exit_2_with_document(tmp_path, no_model):
    r = run("explain", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--json")
    assert r.exit_code == 2
    assert [i["path"] for i in json.loads(r.stdout)["images"]] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]


def test_topk_above_the_number_of_classes_is_an_error():
    r = run("explain", str(sample_path("chelsea")), "--topk", "5000")
    assert r.exit_code == 2
    assert one_error_line(r) == "error: --topk 5000 is more than the model's 1000 classes; use 1000 or less"


def test_saved_maps_are_bounded_and_the_json_says_so(tmp_path):
    out = tmp_path / "out"
    r = run("explain", str(sample_path("chelsea")), "--topk", "30", "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    import numpy as np

    from camkit.explanation import MAX_SAVED_MAPS

    assert len(doc["images"][0]["predictions"]) == 30
    assert np.load(out / "chelsea_maps.npy").shape == (MAX_SAVED_MAPS, 300, 451)
    assert doc["images"][0]["saved_maps"] == MAX_SAVED_MAPS
    assert f"first {MAX_SAVED_MAPS} of 30" in r.stderr


def test_json_stdout_holds_only_the_document_with_out(tmp_path):
    r = run("explain", str(sample_path("chelsea")), "--topk", "1", "--out", str(tmp_path / "o"), "--json")
    assert r.exit_code == 0
    json.loads(r.stdout)
