"""Crash safety: records survive kill -9, --resume finishes with exactly the uninterrupted summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.kill_run import kill_after_records

from camkit.errors import CamkitError
from camkit.evaluate import METRIC_KEYS, evaluate
from camkit.evaluate.records import RecordWriter, iter_records, read_records

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"
DETERMINISTIC = list(METRIC_KEYS) + ["protocol", "model"]


# ------------------------------------------------------------------------------------------------
# The records file on its own.


def test_torn_last_line_is_ignored_and_cut_before_appending(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as w:
        w.write([{"i": 0, "id": "a", "error": "x"}, {"i": 1, "id": "b", "error": "y"}])
    with open(path, "ab") as f:  # what a kill in the middle of write() leaves behind
        f.write(b'{"i":2,"id":"c","er')
    log = read_records(path)
    assert sorted(log.records) == [0, 1] and log.torn_bytes == len(b'{"i":2,"id":"c","er')
    assert [r["i"] for r in iter_records(path)] == [0, 1]
    with RecordWriter(path) as w:
        w.write([{"i": 2, "id": "c", "error": "z"}])
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(x)["i"] for x in lines[:-1]] == [0, 1, 2]


def test_duplicate_index_keeps_the_first_and_corruption_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"i":0,"id":"a","error":"first"}\n{"i":0,"id":"a","error":"second"}\n')
    log = read_records(path)
    assert log.records[0]["error"] == "first" and log.duplicates == 1
    assert [r["error"] for r in iter_records(path)] == ["first"]
    path.write_text('{"i":0,"id":"a","error":"e"}\nnot json\n{"i":1,"id":"b","error":"e"}\n')
    with pytest.raises(CamkitError, match="line 2"):
        read_records(path)


# ------------------------------------------------------------------------------------------------
# kill -9 the real command mid-run, resume, compare with an uninterrupted run.


def _dataset_csv(tmp_path: Path, copies: int = 2) -> Path:
    """The 12 real photos listed ``copies`` times under different ids (paths spelled differently)."""
    meta = SAMPLE / "metadata/ILSVRC/test"
    labels = dict(line.split(",") for line in (meta / "class_labels.txt").read_text().split())
    rows = ["image_path,class_index,x1,y1,x2,y2"]
    for c in range(copies):
        prefix = "./" * c  # val/x.JPEG, ./val/x.JPEG, ././val/x.JPEG: distinct ids, same file
        for line in (meta / "localization.txt").read_text().split():
            rel, *box = line.split(",")
            rows.append(f"{prefix}{rel},{labels[rel]},{','.join(box)}")
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _cli(csv_path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "camkit", "evaluate", "--dataset", "csv", "--root", str(SAMPLE),
            "--annotations", str(csv_path), "--out", str(out), "--batch-size", "4", "--workers", "0",
            "--tau-step", "0.05", "--no-progress", *extra]


@pytest.mark.shared
@pytest.mark.slow
def test_resume_after_kill_9_gives_the_uninterrupted_summary(tmp_path, lite0):
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SAMPLE} (needs ../shared beside the repository)")
    from camkit.datasets import read_csv_boxes

    csv_path = _dataset_csv(tmp_path)
    ds = read_csv_boxes(csv_path, SAMPLE)
    n = len(ds)
    assert n == 24

    out = tmp_path / "killed"
    records = out / "records.jsonl"
    # Kill once at least two batches are on disk, well before the 9 batches are done.
    kill_after_records(_cli(csv_path, out), records, 8)
    done_before = read_records(records).records
    assert 8 <= len(done_before) < n
    # Simulate the worst case of a kill inside write(): a torn, newline-less fragment at the end.
    with open(records, "ab") as f:
        f.write(b'{"i":23,"id":"val/ILSVRC2012_val_000')

    resumed = subprocess.run(_cli(csv_path, out, "--resume"), env={**os.environ, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["resumed_from"] == len(done_before)
    assert summary["run"]["evaluated_now"] == n - len(done_before)

    # Nothing lost, nothing twice: every index exactly once, every line complete.
    lines = records.read_bytes().split(b"\n")
    assert lines[-1] == b""
    indices = [json.loads(x)["i"] for x in lines[:-1]]
    assert sorted(indices) == list(range(n))
    # Records written before the kill were kept as they were, not recomputed.
    log = read_records(records)
    assert all(log.records[i] == r for i, r in done_before.items())

    reference = evaluate(ds, lite0, batch_size=4, tau_step=0.05, out_dir=tmp_path / "uninterrupted", progress=False, gallery_size=0)
    assert {k: summary[k] for k in DETERMINISTIC} == {k: reference[k] for k in DETERMINISTIC}
    assert summary["n_images"] == 24 and summary["n_failed"] == 0


def test_resume_refuses_a_different_run(tmp_path, lite0):
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SAMPLE} (needs ../shared beside the repository)")
    from camkit.datasets import read_ilsvrc

    ds = read_ilsvrc(SAMPLE)
    out = tmp_path / "run"
    evaluate(ds, lite0, batch_size=12, limit=2, out_dir=out, progress=False, gallery_size=0)
    with pytest.raises(CamkitError, match="tau_step|protocol"):
        evaluate(ds, lite0, batch_size=12, limit=2, tau_step=0.05, out_dir=out, resume=True, progress=False)
    with pytest.raises(CamkitError, match="resume=True"):
        evaluate(ds, lite0, batch_size=12, limit=2, out_dir=out, progress=False)


def test_resume_refuses_the_other_weight_layout_and_says_how_to_match(tmp_path, lite0, ilsvrc_sample, monkeypatch):
    """A channels-last model's maps differ from the NCHW one's by float rounding, so a run continues only with the
    layout it began with; an NCHW run (CAMKIT_CHANNELS_LAST=0, or one made before camkit laid models out
    channels-last: run.json without the key) continues with an NCHW model."""
    from camkit.datasets import read_ilsvrc
    from camkit.models import load_model

    ds = read_ilsvrc(ilsvrc_sample)
    out = tmp_path / "run"
    evaluate(ds, lite0, batch_size=4, limit=4, out_dir=out, progress=False, gallery_size=0)
    assert json.loads((out / "run.json").read_text())["model"]["layout"] == "channels_last"
    monkeypatch.setenv("CAMKIT_CHANNELS_LAST", "0")
    nchw = load_model("efficientnet_lite0")
    with pytest.raises(CamkitError, match="weight layout .*CAMKIT_CHANNELS_LAST=0"):
        evaluate(ds, nchw, batch_size=4, limit=4, out_dir=out, resume=True, progress=False, gallery_size=0)
    out2 = tmp_path / "nchw"
    evaluate(ds, nchw, batch_size=4, limit=4, out_dir=out2, progress=False, gallery_size=0)
    assert "layout" not in json.loads((out2 / "run.json").read_text())["model"]
    full = evaluate(ds, nchw, batch_size=4, limit=4, out_dir=out2, resume=True, progress=False, gallery_size=0)
    assert full["n_images"] == 4
    with pytest.raises(CamkitError, match="weight layout"):
        evaluate(ds, lite0, batch_size=4, limit=4, out_dir=out2, resume=True, progress=False, gallery_size=0)


def test_resume_reruns_the_original_batches(tmp_path, lite0, ilsvrc_sample):
    # An interruption can leave a batch half-written (records are appended as they come). The resumed
    # run must compute the missing images in their original batch, with the same neighbours, because
    # CPU kernels may round differently for another batch composition; only the missing records are
    # added. 12 images in batches of 5: [0-4], [5-9], [10-11]; keep 7 records (one batch and a half).
    from camkit.cam.sources import make_map_source
    from camkit.datasets import read_ilsvrc
    from camkit.evaluate.records import RECORDS_NAME

    ds = read_ilsvrc(ilsvrc_sample)
    source = make_map_source(lite0)
    calls: list[list[int]] = []

    def spy(x, gt):
        calls.append(gt.tolist())
        return source(x, gt)

    opts = dict(batch_size=5, tau_step=0.05, progress=False, gallery_size=0, map_source=spy)
    full = evaluate(ds, lite0, out_dir=tmp_path / "full", **opts)
    gt_of = [s.class_index for s in ds.samples]
    assert calls == [gt_of[0:5], gt_of[5:10], gt_of[10:12]]

    out = tmp_path / "cut"
    out.mkdir()
    (out / "run.json").write_bytes((tmp_path / "full" / "run.json").read_bytes())
    lines = (tmp_path / "full" / RECORDS_NAME).read_bytes().splitlines(keepends=True)
    (out / RECORDS_NAME).write_bytes(b"".join(lines[:7]))
    calls.clear()
    resumed = evaluate(ds, lite0, out_dir=out, resume=True, **opts)
    assert calls == [gt_of[5:10], gt_of[10:12]]  # batch [5-9] again, whole, not [7-11]
    assert resumed["run"]["resumed_from"] == 7 and resumed["run"]["evaluated_now"] == 5
    # bit-identical records, hence summary
    assert (out / RECORDS_NAME).read_bytes() == b"".join(lines)
    assert {k: resumed[k] for k in DETERMINISTIC} == {k: full[k] for k in DETERMINISTIC}
    with pytest.raises(CamkitError, match="batch_size"):
        evaluate(ds, lite0, out_dir=out, resume=True, **{**opts, "batch_size": 4})

