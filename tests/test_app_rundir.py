"""Reading ``camkit evaluate --out`` folders for ``camkit view`` and ``report.html``: a real run on the
ILSVRC sample; curves and per-image rows against summary.json, maps recomputed to the run's IoUs."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_sample_or_skip

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def sample_run_dir(tmp_path_factory) -> Path:
    """One ``camkit evaluate`` run of the 12-image sample per test session (shared by the app tests)."""
    root = shared_sample_or_skip()
    base = tmp_path_factory.getbasetemp()
    out = base / "camkit_app_run"
    with open(base / "camkit_app_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "summary.json").exists():
            proc = subprocess.run([sys.executable, "-m", "camkit", "evaluate", "--dataset", "ilsvrc", "--root", str(root),
                                   "--out", str(out)], capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return sample_run_dir(tmp_path_factory)


def test_curves_and_best_tau_match_the_summary(run_dir: Path) -> None:
    from camkit.app.rundir import read_run_dir

    run = read_run_dir(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    for v in ("v1", "v2"):
        for k in ("30", "50", "70"):
            np.testing.assert_allclose(run.curve(v, int(k) / 100), summary["curves"][v][k], rtol=0, atol=1e-9)
    assert run.taus[run.best_tau_index("v1")] == pytest.approx(summary["best_tau"]["v1"]["50"])
    assert run.curve("v1").max() == pytest.approx(summary["maxboxacc"])


def test_rows_agree_with_per_image_csv(run_dir: Path) -> None:
    import csv

    from camkit.app.rundir import image_rows, read_run_dir

    run = read_run_dir(run_dir)
    rows = image_rows(run)
    assert len(rows) == 12
    with open(run_dir / "per_image.csv", newline="") as f:
        by_id = {r["image_id"]: r for r in csv.DictReader(f)}
    summary = json.loads((run_dir / "summary.json").read_text())
    correct = 0
    for row in rows:
        c = by_id[row["id"]]
        assert row["gt_name"] == c["gt_name"]
        assert row["best_iou"] == pytest.approx(float(c["v1_best_iou"]), abs=1e-6)
        assert row["gt_known_iou"] == pytest.approx(float(c["gt_known_iou"]), abs=1e-6)
        correct += row["correct"]
    # "correct at the best tau" counts exactly the images MaxBoxAcc counts
    assert 100 * correct / len(rows) == pytest.approx(summary["maxboxacc"])


def test_images_found_and_maps_reproduce_the_run(run_dir: Path) -> None:
    from camkit.app.dataset_locate import locate_images
    from camkit.app.run_maps import RunMaps
    from camkit.app.rundir import read_run_dir
    from camkit.metrics import box_iou_inclusive

    run = read_run_dir(run_dir)
    paths = locate_images(run)
    assert sorted(paths) == sorted(r["id"] for r in run.records)
    maps = RunMaps(run, paths)
    for rec in run.records[:4]:
        item = maps.get(rec["i"])
        gt = np.asarray(rec["gt_boxes"])
        ious = [box_iou_inclusive(np.asarray(b), gt).max() for b in item.v1]
        np.testing.assert_allclose(ious, rec["v1"], atol=1e-7)  # records keep 8 decimals


def test_wrong_dataset_folder_is_refused(run_dir: Path, tmp_path: Path) -> None:
    from camkit.app.dataset_locate import locate_images
    from camkit.app.rundir import read_run_dir
    from camkit.errors import DatasetError

    with pytest.raises(DatasetError, match="cannot find the photos"):
        locate_images(read_run_dir(run_dir), root=tmp_path, kind="ilsvrc")


def test_report_html_is_self_contained(run_dir: Path, tmp_path: Path) -> None:
    from camkit.app.report_html import write_report_html

    out = write_report_html(run_dir, tmp_path / "report.html")
    text = out.read_text()
    assert len(re.findall(r'<img class="t" alt="ILSVRC2012_val_\d+" src="data:image/jpeg;base64,', text)) == 12
    assert not re.search(r'(src|href)="(https?:|//|/)', text)  # nothing fetched from anywhere
    assert "gallery_worst.png" in text and text.count("<tr>") == 13
    # the default target is inside the run folder (what `camkit view RUN --html` and evaluate write)
    proc = subprocess.run([sys.executable, "-m", "camkit", "view", str(run_dir), "--html"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == (run_dir / "report.html").resolve()


def test_report_thumbnails_show_the_squashed_photo_and_its_boxes(run_dir: Path, tmp_path: Path) -> None:
    import base64

    import cv2
    from PIL import Image

    from camkit.app.report_html import write_report_html
    from camkit.app.thumbnails import THUMB_SIDE

    text = write_report_html(run_dir, tmp_path / "report.html").read_text()
    cell = (r'<div class="t"><img class="t" alt="(ILSVRC2012_val_\d+)" src="data:image/jpeg;base64,([^"]+)">'
            r'<svg viewBox="0 0 224 224" preserveAspectRatio="none">(.*?)</svg></div>')
    cells = {m[0]: (m[1], m[2]) for m in re.findall(cell, text)}
    # evaluate's report (thumbnails made by its figure process or its own threads) holds the same bytes
    assert {m[0]: (m[1], m[2]) for m in re.findall(cell, (run_dir / "report.html").read_text())} == cells
    assert len(cells) == 12
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    root = shared_sample_or_skip()
    for rec in records:
        uri, svg = cells[rec["id"]]
        thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(uri), np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB).astype(np.float64)
        assert thumb.shape == (THUMB_SIDE, THUMB_SIDE, 3)
        # independently: the whole photo decoded and squashed by Pillow. The DCT-scaled decode and JPEG 80 cost
        # 2.3-4.5 levels on these photos; the same photo mirrored costs 10-125
        with Image.open(next((root / "val").glob(rec["id"] + ".*"))) as im:
            ref = np.asarray(im.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR), np.float64)
        assert np.abs(thumb - ref).mean() < 6.0 < np.abs(thumb - ref[:, ::-1]).mean(), rec["id"]
        # the boxes drawn over it are the record's, on the 224 input square: inclusive pixels x0..x1 cover x1 - x0 + 1
        rects = re.findall(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" stroke="(#[0-9a-f]{6})"/>', svg)
        want = [(b, "#22c55e") for b in rec["gt_boxes"]] + [(rec["cvpr16_boxes"][0], "#f43f5e")]
        assert [([int(x), int(y), int(x) + int(w) - 1, int(y) + int(h) - 1], c) for x, y, w, h, c in rects] == want


def test_records_hold_the_tau_curves_as_arrays_of_the_same_values(run_dir: Path) -> None:
    from camkit.app.rundir import read_run_dir
    from camkit.app.view_app import merged_rows

    run = read_run_dir(run_dir)
    raw = {json.loads(line)["i"]: json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()}
    for rec in run.records:
        for key in ("v1", "v2"):
            assert isinstance(rec[key], np.ndarray) and rec[key].dtype == np.float64
            assert rec[key].tolist() == raw[rec["i"]][key]  # the same floats, bit for bit
    rows = merged_rows([run, run])
    json.dumps(rows)  # what the viewer sends: plain lists again
    assert rows[0]["v1"][0] == raw[rows[0]["i"]]["v1"]


def test_not_a_run_folder_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "camkit", "view", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "run.json" in proc.stderr


def test_every_thumbnail_is_started_only_when_the_report_shows_every_image(monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from camkit.app import thumbnails

    monkeypatch.setattr(thumbnails, "MAX_THUMBNAILS", 3)
    made: list[int] = []
    monkeypatch.setattr(thumbnails, "thumbnail_uri", lambda path: made.append(int(path.stem)) or f"uri{path.stem}")
    photos = [(i, Path(f"{i}.jpg")) for i in range(4)]
    with ThreadPoolExecutor(2) as pool:
        assert thumbnails.start_every_thumbnail(pool, iter(photos)) == {}  # 4 > 3
        started = thumbnails.start_every_thumbnail(pool, iter(photos[:3]))
        assert {i: f.result() for i, f in started.items()} == {0: "uri0", 1: "uri1", 2: "uri2"}
    assert sorted(made) == [0, 1, 2]


def test_thumbnails_made_ahead_are_handed_over_without_being_made_again(monkeypatch) -> None:
    from camkit.app import thumbnails

    root = shared_sample_or_skip()
    paths = sorted((root / "val").glob("*.JPEG"))[:5]
    assert len(paths) == 5
    expected = {str(p): thumbnails.thumbnail_uri(p) for p in paths}
    ahead = thumbnails.ThumbnailPrefetch(lambda: paths[:4])
    ahead._thread.join(60)
    assert not ahead._thread.is_alive()
    made_now: list[str] = []
    real = thumbnails.thumbnail_uri
    monkeypatch.setattr(thumbnails, "thumbnail_uri", lambda p: made_now.append(p.name) or real(p))
    assert ahead.take([str(p) for p in paths]) == expected
    assert made_now == [paths[4].name]  # only the one it was not given
    # a dataset it cannot read, or one too large for the report to show every image: nothing made ahead
    for photos in (lambda: 1 / 0, lambda: paths * (thumbnails.MAX_THUMBNAILS // 5 + 1)):
        empty = thumbnails.ThumbnailPrefetch(photos)
        empty._thread.join(60)
        assert empty._made == {}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_the_thread_making_thumbnails_ahead_lowers_its_own_priority_only() -> None:
    import os
    import threading

    from camkit.app.thumbnails import _lower_this_threads_priority

    seen: dict[str, int] = {}

    def run() -> None:
        _lower_this_threads_priority()
        seen["thread"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert seen["thread"] == 19 and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_photos_found_for_a_run_on_a_relative_root_from_another_folder(tmp_path: Path, monkeypatch, lite0) -> None:
    """`camkit evaluate --root ../data` records where the photos are (absolute), so `camkit view` and report.html
    find them from any working folder (the source text alone names only the relative path)."""
    from camkit.app.dataset_locate import locate_images
    from camkit.app.rundir import read_run_dir
    from camkit.datasets import read_layout
    from camkit.evaluate import evaluate

    sample = shared_sample_or_skip()
    monkeypatch.chdir(sample.parent)
    ds = read_layout("ilsvrc", Path(sample.name), None, None, None)
    summary = evaluate(ds, lite0, batch_size=12, out_dir=tmp_path / "run", progress=False, gallery_size=0, limit=3)
    assert summary["dataset"]["root"] == str(sample.resolve()) and summary["dataset"]["kind"] == "ilsvrc"
    assert "/" + sample.name not in summary["dataset"]["source"]  # relative: no absolute path to guess from
    monkeypatch.chdir(tmp_path)
    paths = locate_images(read_run_dir(tmp_path / "run"))
    assert sorted(paths) == sorted(s.image_id for s in ds.samples[:3]) and all(p.is_file() for p in paths.values())
