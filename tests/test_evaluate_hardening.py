"""camkit evaluate hardening: one run per output folder, the exit-code rule, bounded options, a
spreadsheet-safe CSV, a clean Ctrl-C, and a report that only quotes its own benchmark."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camkit.errors import ParameterError, RunDirectoryError
from camkit.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
CAMKIT = [sys.executable, "-m", "camkit"]

HOLD = """
import sys, time
from camkit.io.run_lock import RunLock
with RunLock(sys.argv[1], "camkit evaluate"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _cli(args):
    from typer.testing import CliRunner

    from camkit.cli.app import app

    return CliRunner().invoke(app, ["evaluate", *args])


def _stderr(result) -> str:
    return result.stderr if hasattr(result, "stderr") else result.output


def _csv_dataset(tmp_path: Path, rows: list[str]) -> Path:
    (tmp_path / "boxes.csv").write_text("image_path,class_index,x1,y1,x2,y2\n" + "\n".join(rows) + "\n")
    return tmp_path / "boxes.csv"


# ------------------------------------------------------------------------------------------------
# 1. One run per output folder.


def test_library_evaluate_refuses_a_folder_locked_by_another_process(tmp_path, lite0, ilsvrc_sample):
    from camkit.datasets import read_ilsvrc

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError) as err:
            evaluate(read_ilsvrc(ilsvrc_sample), lite0, limit=1, out_dir=out, progress=False)
        msg = str(err.value)
        assert str(out) in msg and f"pid {holder.pid}" in msg and "\n" not in msg
        assert not (out / "records.jsonl").exists() and not (out / "run.json").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.slow
def test_two_concurrent_cli_runs_into_one_folder(tmp_path, ilsvrc_sample):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 120 images, one per batch: the first run still holds the folder when the second has started up, even on a
    # loaded machine (with the 12 photos alone it once finished while the second was importing torch)
    _repeated_kaggle_layout(ilsvrc_sample, tmp_path / "data", 10)
    base = ["evaluate", "--dataset", "ilsvrc", "--root", str(tmp_path / "data"), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(CAMKIT + base + ["--batch-size", "1", "--workers", "0"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        lock = out / ".camkit.lock"
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and f'"pid": {first.pid}' in lock.read_text():
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        second = subprocess.run(CAMKIT + base, env=env, capture_output=True, text=True, timeout=180)
        assert first.poll() is None, "the first run must still hold the folder"
        assert second.returncode == 2
        err = second.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:"), err
        assert str(out) in err and f"pid {first.pid}" in err
    finally:
        first.kill()
        first.wait(timeout=30)
    # the first run's records are its own: one line per image index, no interleaving
    lines = (out / "records.jsonl").read_bytes().splitlines()
    assert len({json.loads(line)["i"] for line in lines}) == len(lines)


# ------------------------------------------------------------------------------------------------
# 2. Exit codes: 0 all good, 1 some images skipped (listed), 2 nothing could be read.


def test_cli_nothing_readable_is_an_input_error(tmp_path):
    for name in ("a.JPEG", "b.JPEG", "c.JPEG"):
        (tmp_path / name).write_text("not an image\n")
    boxes = _csv_dataset(tmp_path, [f"{n},1,0,0,5,5" for n in ("a.JPEG", "b.JPEG", "c.JPEG")])
    r = _cli(["--dataset", "csv", "--root", str(tmp_path), "--annotations", str(boxes), "--out",
              str(tmp_path / "out"), "--no-progress", "--workers", "0"])
    err = _stderr(r).strip()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "could be read" in err and "a.JPEG" in err and "masks, no boxes" not in r.output


def test_cli_some_images_skipped_exits_1_and_lists_them(tmp_path, ilsvrc_sample):
    good = ilsvrc_sample / "val" / "ILSVRC2012_val_00000001.JPEG"
    (tmp_path / "bad.JPEG").write_text("not an image\n")
    boxes = _csv_dataset(tmp_path, [f"{good},65,10,10,100,100", "bad.JPEG,1,0,0,5,5"])
    r = _cli(["--dataset", "csv", "--root", str(tmp_path), "--annotations", str(boxes), "--out",
              str(tmp_path / "out"), "--no-progress", "--workers", "0"])
    assert r.exit_code == 1, (r.exit_code, r.output)
    assert "bad.JPEG" in _stderr(r)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_failed"] == 1


# ------------------------------------------------------------------------------------------------
# 3. Options are checked before any work, with the parameter's name.


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"tau_step": 1e-7}, "tau_step"),
        ({"tau_step": 1.0}, "tau_step"),
        ({"batch_size": 0}, "batch_size"),
        ({"workers": -1}, "workers"),
        ({"input_size": 4}, "input_size"),
        ({"input_size": 100_000}, "input_size"),
        ({"limit": 0}, "limit"),
        ({"gallery_size": -1}, "gallery_size"),
    ],
)
def test_out_of_range_options_are_parameter_errors(kwargs, param, lite0, ilsvrc_sample, tmp_path):
    from camkit.datasets import read_ilsvrc

    with pytest.raises(ParameterError) as err:
        evaluate(read_ilsvrc(ilsvrc_sample), lite0, out_dir=tmp_path / "o", progress=False, **kwargs)
    assert err.value.param == param
    msg = str(err.value)
    assert msg.startswith(f"{param}=") and "--" not in msg and "\n" not in msg
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_cli_tiny_tau_step_is_refused_in_one_line(tmp_path, ilsvrc_sample):
    r = _cli(["--dataset", "ilsvrc", "--root", str(ilsvrc_sample), "--out", str(tmp_path / "o"), "--tau-step", "1e-7",
              "--no-progress"])
    err = _stderr(r).strip()
    assert r.exit_code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --tau-step 1e-07"), err
    assert not (tmp_path / "o" / "records.jsonl").exists()


# ------------------------------------------------------------------------------------------------
# 4. CSV cells that a spreadsheet would run as formulas; Ctrl-C; the report's published rows.


def test_per_image_csv_neutralises_formula_cells(tmp_path):
    from camkit.evaluate.protocol import Protocol
    from camkit.evaluate.tables import write_per_image_csv

    p = Protocol(tau_step=0.5)
    rec = {"i": 0, "id": "=HYPERLINK(\"http://x\")", "w": 10, "h": 10, "gt": 1, "topk": [1, 2, 3, 4, 5],
           "scores": [0.5, 0.2, 0.1, 0.1, 0.1], "gt_boxes": [[0, 0, 5, 5]], "cvpr16_boxes": [[0, 0, 5, 5]] * 6,
           "cvpr16_ious": [1.0] * 6, "v1": [1.0, 0.5], "v2": [1.0, 0.5]}
    failed = {"i": 1, "id": "+1-2", "error": "@SUM(A1) unreadable"}
    names = ["-minus", "@at", "plain", "d", "e", "f"]
    write_per_image_csv(tmp_path / "p.csv", [rec, failed], p, names)
    rows = list(csv.DictReader(open(tmp_path / "p.csv", newline="")))
    assert rows[0]["image_id"] == "'=HYPERLINK(\"http://x\")"
    assert rows[0]["gt_name"] == "'@at" and rows[0]["top1_name"] == "'@at"
    assert rows[1]["image_id"] == "'+1-2" and rows[1]["error"] == "'@SUM(A1) unreadable"
    assert rows[0]["gt_known_iou"] == "1.000000"  # numbers are left alone


def _repeated_kaggle_layout(sample: Path, root: Path, copies: int) -> int:
    """The sample's photos ``copies`` times over in Kaggle's ILSVRC layout under ``root`` (symlinks, new ids)."""
    (root / "val").mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text((sample / "LOC_synset_mapping.txt").read_text())
    rows = (sample / "LOC_val_solution.csv").read_text().splitlines()
    out = [rows[0]]
    for _ in range(copies):
        for row in rows[1:]:
            image_id, boxes = row.split(",", 1)
            new_id = f"ILSVRC2012_val_{len(out):08d}"
            (root / "val" / f"{new_id}.JPEG").symlink_to(sample / "val" / f"{image_id}.JPEG")
            out.append(f"{new_id},{boxes}")
    (root / "LOC_val_solution.csv").write_text("\n".join(out) + "\n")
    return len(out) - 1


@pytest.mark.slow
def test_sigint_exits_130_in_one_line_and_the_run_resumes(tmp_path, ilsvrc_sample):
    # enough images that the interrupt lands in the batch loop however fast the machine (with 6, a fast
    # one finished the run between the second record and the signal)
    n = _repeated_kaggle_layout(ilsvrc_sample, tmp_path / "data", 5)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = CAMKIT + ["evaluate", "--dataset", "ilsvrc", "--root", str(tmp_path / "data"), "--out", str(out),
                     "--no-progress", "--batch-size", "1", "--workers", "2", "--tau-step", "0.05"]
    # As from a terminal: a test run started in the background (`cmd &` in a script) hands its children SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler, so the run would finish with exit 0.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    records = out / "records.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if records.exists() and records.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGINT)  # the main process alone, not its DataLoader workers
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--resume" in err
    done = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["n_images"] == n


def _summary_for(dataset_name: str) -> dict:
    from camkit.evaluate.protocol import Protocol

    v = {"30": 80.0, "50": 60.0, "70": 30.0}
    return {
        "n_images": 12, "n_failed": 0, "n_box_images": 12, "n_pxap_images": 0, "top1_cls": 75.0, "top5_cls": 90.0,
        "top1_loc": 50.0, "top5_loc": 55.0, "gt_known_loc": 60.0, "maxboxacc": 61.0, "maxboxacc_v2": 56.6,
        "maxboxacc_per_iou": v, "maxboxacc_v2_per_iou": v, "best_tau": {"v1": {"50": 0.2}, "v2": {k: 0.2 for k in v}},
        "pxap": None, "protocol": Protocol().to_dict(), "model": {"name": "m"}, "dataset": {"name": dataset_name},
    }


@pytest.mark.parametrize(
    "name, own, foreign",
    [
        ("ILSVRC-2012 val", ["ImageNet test |", "CAM paper"], ["CUB test |"]),
        ("ILSVRC/test", ["ImageNet test |", "CAM paper"], ["CUB test |"]),
        ("CUB-200-2011 test", ["CUB test |"], ["ImageNet test |", "CAM paper"]),
        ("CUB/test", ["CUB test |"], ["ImageNet test |", "CAM paper"]),
        ("my_boxes", [], ["CUB test |", "ImageNet test |", "CAM paper"]),
    ],
)
def test_report_quotes_only_the_datasets_own_published_rows(name, own, foreign):
    from camkit.evaluate.report import markdown_report

    text = markdown_report(_summary_for(name))
    for s in own:
        assert s in text, s
    for s in foreign:
        assert s not in text, s


def test_cli_an_output_that_cannot_be_written_is_one_line_naming_it(tmp_path, ilsvrc_sample):
    """A folder squatting on a figure's name: the run's other files are written, the error names the path (exit 2)."""
    out = tmp_path / "out"
    (out / "boxacc_vs_tau.png").mkdir(parents=True)
    r = _cli(["--dataset", "ilsvrc", "--root", str(ilsvrc_sample), "--out", str(out), "--no-progress"])
    err = _stderr(r).strip()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot read or write"), err
    assert str(out / "boxacc_vs_tau.png") in err and "Is a directory" in err and "unexpected" not in err
    assert (out / "summary.json").is_file() and (out / "per_image.csv").is_file()
