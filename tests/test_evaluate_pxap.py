"""PxAP in camkit evaluate on an OpenImages30k-layout dataset built from scikit-image's photos.

Masks are drawn by hand (polygons / ellipses roughly covering each object); one image has two instance
masks (one drawn with the value 1, stored at half the photo's resolution), one an ignore region, one no
ignore file. The run's PxAP is checked against a brute-force PxAP written here from wsolevaluation's
procedure (get_mask + thresholding every pixel at every tau), sharing no code with camkit's.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.kill_run import kill_after_records
from PIL import Image, ImageDraw

from camkit.datasets import LocDataset, LocSample, read_wsol_metadata
from camkit.evaluate import METRIC_KEYS, evaluate
from camkit.evaluate.protocol import unpack_counts
from camkit.evaluate.records import iter_records, read_records
from camkit.io.samples import sample_path

DETERMINISTIC = list(METRIC_KEYS) + ["protocol", "model"]
SIZE = 224

# name -> (folder, ImageNet class, instance masks, ignore mask, mask scale). Shapes are in the photo's
# pixels: ("poly", [(x, y), ...], value) or ("ellipse", (x0, y0, x1, y1), value); a mask file is drawn at
# ``scale`` x the photo's size (OpenImages masks need not have the photo's resolution).
PHOTOS = {
    # the cat's head and chest (451x300); corners are background
    "chelsea": ("cat", 281, [[("ellipse", (10, -30, 410, 320), 255)]], None, 1.0),
    # cup and saucer as two instances (600x400), the saucer drawn with value 1 (> 0.5 is foreground),
    # masks at half resolution, an ignore file that marks nothing (as most OpenImages ignore files)
    "coffee": ("cup", 967, [
        [("poly", [(175, 40), (230, 18), (380, 20), (420, 60), (410, 200), (380, 235), (250, 300), (200, 300),
                   (190, 250), (180, 150)], 255)],
        [("ellipse", (78, 95, 480, 385), 1)],
    ], [], 0.5),
    # the motorcycle (741x500); ignore = its bounding box minus the foreground
    "motorcycle": ("bike", 670, [[("poly", [(95, 200), (150, 150), (350, 160), (480, 150), (560, 110), (600, 270),
                                            (680, 320), (688, 420), (620, 452), (540, 420), (470, 380), (330, 370),
                                            (280, 380), (200, 400), (125, 370), (120, 280), (92, 230)], 255)]],
                   [("poly", [(92, 95), (688, 95), (688, 452), (92, 452)], 255)], 1.0),
    # the rocket (640x427); no ignore file at all (empty third field in localization.txt)
    "rocket": ("rocket", 657, [[("poly", [(310, 130), (322, 125), (334, 135), (338, 405), (305, 405), (305, 150)], 255)]],
               None, 1.0),
}


def _draw(shapes, size_wh, scale) -> Image.Image:
    w, h = round(size_wh[0] * scale), round(size_wh[1] * scale)
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    for kind, coords, value in shapes:
        if kind == "poly":
            d.polygon([(x * scale, y * scale) for x, y in coords], fill=value)
        else:
            d.ellipse([c * scale for c in coords], fill=value)
    return im


def make_openimages(base: Path, names=tuple(PHOTOS), copies: int = 1, separate_masks: bool = False):
    """wsolevaluation's OpenImages layout: images under ``root/test/<folder>/``, masks beside them (or
    under ``masks/`` when ``separate_masks``), metadata in ``root/metadata/OpenImages/test``.
    Returns (image root, mask root, metadata split folder)."""
    root = base / "dataset"
    mask_root = base / "masks" if separate_masks else root
    meta = root / "metadata/OpenImages/test"
    meta.mkdir(parents=True)
    ids, labels, loc = [], [], []
    for name in names:
        folder, label, instances, ignore, scale = PHOTOS[name]
        src = sample_path(name)
        (root / "test" / folder).mkdir(parents=True, exist_ok=True)
        (mask_root / "test" / folder).mkdir(parents=True, exist_ok=True)
        size_wh = Image.open(src).size
        mask_rel = []
        for k, shapes in enumerate(instances):
            rel = f"test/{folder}/{name}_m{k}.png"
            _draw(shapes, size_wh, scale).save(mask_root / rel)
            mask_rel.append(rel)
        ignore_rel = ""
        if ignore is not None:
            ignore_rel = f"test/{folder}/{name}_ignore.png"
            _draw(ignore, size_wh, scale).save(mask_root / ignore_rel)
        for c in range(copies):
            image_id = f"test/{folder}/{name}{'' if c == 0 else f'_copy{c}'}{src.suffix}"
            shutil.copyfile(src, root / image_id)
            ids.append(image_id)
            labels.append(f"{image_id},{label}")
            loc.append(f"{image_id},{mask_rel[0]},{ignore_rel}")
            loc += [f"{image_id},{m}," for m in mask_rel[1:]]
    (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (meta / "class_labels.txt").write_text("\n".join(labels) + "\n")
    (meta / "localization.txt").write_text("\n".join(loc) + "\n")
    return root, mask_root, meta


# ------------------------------------------------------------------------------------------------
# Brute force, from the papers' text and wsolevaluation's published procedure.


def _gt_mask(sample) -> np.ndarray:
    """wsolevaluation's get_mask: grayscale, nearest to 224, > 0.5, OR over instances, ignore \\ fg."""
    def load(path):
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        return cv2.resize(gray, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0.5

    fg = np.any([load(p) for p in sample.mask_paths], axis=0)
    ignore = load(sample.ignore_path) & ~fg if sample.ignore_path is not None else np.zeros_like(fg)
    return fg, ignore


def _cam(model, path, cls) -> tuple[np.ndarray, list[int]]:
    """The min-max normalised exact CAM of ``cls`` at 224 (Lite0: bicubic squash, mean = std = 0.5) and
    the top-5 classes."""
    import torch

    img = Image.open(path).convert("RGB")
    x = np.asarray(img.resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        feats = model.features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
        logits = model.head(feats)[0].numpy()
    f = feats[0].numpy().astype(np.float64)
    w = model.classifier.weight.detach().numpy().astype(np.float64)[cls]
    m = cv2.resize(np.tensordot(w, f, axes=1).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return (m - m.min()) / (m.max() - m.min()), [int(c) for c in np.argsort(-logits, kind="stable")[:5]]


def _brute_force_pxap(model, samples, step: float) -> dict:
    taus = np.arange(0, 1, step)
    thresholds = np.concatenate([[2.0, 1.0], taus[::-1]])  # from the top: "score >= t" predicts positive
    tp = np.zeros(len(thresholds), dtype=np.int64)
    fp = np.zeros(len(thresholds), dtype=np.int64)
    per_image = []
    top1 = top5 = 0
    for s in samples:
        fg, ignore = _gt_mask(s)
        bg = ~fg & ~ignore
        cam, top = _cam(model, s.image_path, s.class_index)
        top1 += top[0] == s.class_index
        top5 += s.class_index in top
        for j, t in enumerate(thresholds):
            on = cam >= t
            tp[j] += int((on & fg).sum())
            fp[j] += int((on & bg).sum())
        per_image.append((int(fg.sum()), int(bg.sum())))
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = tp / tp[-1]  # the last threshold (0) predicts every pixel: tp[-1] = all fg pixels
    ap = sum(precision[j] * (recall[j] - recall[j - 1]) for j in range(1, len(thresholds)) if tp[j] + fp[j] > 0)
    n = len(samples)
    return {"pxap": 100.0 * ap, "per_image": per_image, "recall": recall, "precision": precision,
            "top1_cls": 100.0 * top1 / n, "top5_cls": 100.0 * top5 / n}


# ------------------------------------------------------------------------------------------------
# The pieces: mask reading, per-image counts.


def test_gt_mask_golden_by_hand(tmp_path):
    from camkit.datasets.masks import load_gt_mask

    # 2x2 files, nearest-resized to 4x4: each file pixel becomes a 2x2 block.
    Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)).save(tmp_path / "a.png")  # instance: top right
    Image.fromarray(np.array([[1, 0], [0, 0]], np.uint8)).save(tmp_path / "b.png")  # value 1 > 0.5: top left
    Image.fromarray(np.array([[255, 255], [255, 0]], np.uint8)).save(tmp_path / "ignore.png")
    mask = load_gt_mask([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "ignore.png", 4)
    # fg = a OR b = top row; ignore = ignore file minus fg = bottom left; the rest background.
    expected = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [255, 255, 0, 0], [255, 255, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(load_gt_mask([tmp_path / "a.png"], None, 4)[:, :2], 0)


def test_stored_counts_give_the_pxap_of_the_maps():
    from camkit.evaluate.protocol import pack_counts
    from camkit.metrics.pxap import PxAPEvaluator, pxap_bin_counts, pxap_edges

    rng = np.random.default_rng(0)
    taus = np.arange(0, 1, 0.001)
    maps = rng.random((5, 32, 32)) ** 3
    maps[0, 0, 0] = 1.0  # a score of exactly 1 (every min-max map has one) lands in [1, 2)
    masks = rng.choice(np.array([0, 1, 255], np.uint8), size=maps.shape, p=[0.6, 0.3, 0.1])
    direct = PxAPEvaluator(taus)
    direct.accumulate(maps, masks)
    stored = PxAPEvaluator(taus)
    for m, k in zip(maps, masks, strict=True):
        fg, bg = pxap_bin_counts(m, k, pxap_edges(taus))
        n = len(fg)
        assert n == 1002 and fg[-2] == (m[k == 1] == 1.0).sum()
        stored.accumulate_counts(unpack_counts(pack_counts(fg), n), unpack_counts(pack_counts(bg), n))
    np.testing.assert_array_equal(stored.fg_hist, direct.fg_hist)
    assert stored.compute()["pxap"] == direct.compute()["pxap"]
    assert pack_counts(np.zeros(4, np.int64)) == [] and pack_counts(np.array([0, 0, 3, 0, 2, 0])) == [2, 3, 0, 2]


# ------------------------------------------------------------------------------------------------
# The whole run.


@pytest.fixture(scope="module")
def oi(tmp_path_factory):
    return make_openimages(tmp_path_factory.mktemp("oi"))


@pytest.fixture(scope="module")
def run(oi, lite0, tmp_path_factory):
    root, mask_root, meta = oi
    ds = read_wsol_metadata(meta, root, mask_root)
    out = tmp_path_factory.mktemp("run")
    return evaluate(ds, lite0, batch_size=3, out_dir=out, progress=False), out, ds


def test_pxap_equals_brute_force(run, lite0):
    summary, out, ds = run
    assert summary["n_images"] == 4 and summary["n_failed"] == 0 and summary["n_pxap_images"] == 4
    ref = _brute_force_pxap(lite0, ds.samples, 0.01)
    # Same pixels in every image's fg and bg (masks: resize, threshold, OR, ignore are the reference's).
    records = sorted(iter_records(out / "records.jsonl"), key=lambda r: r["i"])
    n_bins = len(np.arange(0, 1, 0.01)) + 2  # taus, then [1, 2) and [2, 3]
    counted = [(int(unpack_counts(r["pxap"]["fg"], n_bins).sum()), int(unpack_counts(r["pxap"]["bg"], n_bins).sum()))
               for r in records]
    assert counted == ref["per_image"]
    # The coffee saucer (value 1, half resolution) is foreground; the motorcycle's box is mostly ignored.
    # The saucer ellipse alone covers pi * 201 * 145 / (600 * 400) = 38% of the photo, the cup ~25%.
    fg_coffee, bg_coffee = ref["per_image"][1]
    assert fg_coffee > 0.4 * SIZE * SIZE
    # The bike's box is 597 x 358 of 741 x 500 = 58% of the photo; what the bike does not cover is ignored.
    fg_bike, bg_bike = ref["per_image"][2]
    assert SIZE * SIZE - fg_bike - bg_bike > 0.2 * SIZE * SIZE
    # The maps are the same up to float32 rounding (torch einsum here, float64 tensordot there), which
    # can move a pixel lying on a bin edge; one pixel moves PxAP by ~1e-4 points, any protocol slip
    # (ignore pixels counted, another mask resize, another map) by far more (see the sensitivity test).
    assert summary["pxap"] == pytest.approx(ref["pxap"], abs=1e-3)
    assert 0 < summary["pxap"] < 100
    curve = summary["pxap_curve"]
    assert curve["recall"][-1] == 1.0 and curve["thresholds"][-1] == 0.0
    np.testing.assert_allclose(curve["precision"][-1], ref["precision"][-1], atol=1e-12)  # fg fraction
    # No boxes: box metrics are null, classification is there.
    for key in ("top1_loc", "top5_loc", "gt_known_loc", "maxboxacc", "maxboxacc_v2"):
        assert summary[key] is None, key
    assert summary["n_box_images"] == 0
    assert (summary["top1_cls"], summary["top5_cls"]) == (ref["top1_cls"], ref["top5_cls"])
    assert summary["top5_cls"] >= 75.0  # the GT class is among the top 5 of most of these photos


def test_brute_force_is_sensitive_to_the_protocol(run, lite0):
    # The brute-force check can fail: the same maps with the ignore pixels counted as background, or a
    # bilinear mask resize, give PxAPs far outside the tolerance above.
    summary, _, ds = run
    bike = ds.samples[2]
    fg, ignore = _gt_mask(bike)
    cam, _ = _cam(lite0, bike.image_path, bike.class_index)

    def ap(fg_mask, bg_mask):
        ts = np.concatenate([[2.0, 1.0], np.arange(0, 1, 0.01)[::-1]])
        tp = np.array([(cam >= t)[fg_mask].sum() for t in ts])
        fp = np.array([(cam >= t)[bg_mask].sum() for t in ts])
        p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0)
        r = tp / tp[-1]
        return 100 * sum(p[j] * (r[j] - r[j - 1]) for j in range(1, len(ts)) if tp[j] + fp[j] > 0)

    right = ap(fg, ~fg & ~ignore)
    wrong = ap(fg, ~fg)
    assert abs(right - wrong) > 1.0


def test_per_image_csv_report_and_curve(run):
    summary, out, ds = run
    rows = list(csv.DictReader(open(out / "per_image.csv", newline="")))
    assert [r["image_id"] for r in rows] == [s.image_id for s in ds.samples]
    assert all(r["gt_boxes"] == "" and r["v2_best_iou"] == "" for r in rows)
    per_image = [float(r["pxap"]) for r in rows]
    assert all(0 < v <= 100 for v in per_image)
    # Pooled over pixels, the split's PxAP lies between the images' own PxAPs.
    assert min(per_image) <= summary["pxap"] <= max(per_image)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["pxap"] == summary["pxap"] and on_disk["maxboxacc"] is None
    assert on_disk["run"]["files"]["pxap_curve"] == "pxap_pr_curve.png"
    assert not (out / "boxacc_vs_tau.png").exists() and not (out / "gallery_best.png").exists()
    img = cv2.imread(str(out / "pxap_pr_curve.png"))
    assert img is not None and img.shape[0] > 300 and img.std() > 10
    report = (out / "report.md").read_text()
    assert f"| PxAP (pixel average precision, 4 images) | {summary['pxap']:.2f} |" in report
    assert "Box metrics (top-k localization, MaxBoxAcc, MaxBoxAccV2) skipped" in report
    assert "OpenImages30k test | CAM VGG16, InceptionV3, ResNet50 | PxAP | see Choe et al. 2020" in report
    assert "MaxBoxAccV2 |" not in report and "pxap_pr_curve.png" in report
    # report.html embeds the PxAP curve (it looked for another file name until the names were shared)
    html = (out / "report.html").read_text()
    assert '<h2>pxap_pr_curve.png</h2><img alt="pxap_pr_curve.png" src="data:image/png;base64,' in html
    # masks only: no box curve, best tau or box columns (they read 0 before), the photos ranked by PxAP instead
    assert "BoxAcc against tau" not in html and "best tau (V1)" not in html and "IoU @tau*" not in html
    assert "Masks, no boxes" in html and html.count('<img class="t"') == 4


def test_boxes_and_masks_get_both(run, lite0):
    # The photos with hand-drawn boxes (conftest's HAND_BOXES) *and* masks: box metrics as a box-only
    # run, PxAP as a mask-only run.
    from conftest import HAND_BOXES

    _, _, ds = run
    both, boxes_only = [], []
    for s in ds.samples:
        name = Path(s.image_id).stem
        if name not in HAND_BOXES:
            continue
        box = np.array([HAND_BOXES[name][1]], dtype=np.float64)
        both.append(LocSample(s.image_path, s.image_id, s.class_index, box, mask_paths=s.mask_paths, ignore_path=s.ignore_path))
        boxes_only.append(LocSample(s.image_path, s.image_id, s.class_index, box))
    assert len(both) == 3
    masks_only = [s for s in ds.samples if Path(s.image_id).stem in HAND_BOXES]
    b = evaluate(LocDataset("both", both), lite0, batch_size=3, progress=False)
    o = evaluate(LocDataset("boxes", boxes_only), lite0, batch_size=3, progress=False)
    m = evaluate(LocDataset("masks", masks_only), lite0, batch_size=3, progress=False)
    box_keys = ("top1_loc", "top5_loc", "gt_known_loc", "maxboxacc", "maxboxacc_v2", "curves", "best_tau")
    assert {k: b[k] for k in box_keys} == {k: o[k] for k in box_keys}
    assert b["maxboxacc_v2"] is not None and o["pxap"] is None
    assert b["pxap"] == m["pxap"] and b["pxap_curve"] == m["pxap_curve"] and b["pxap"] is not None


def test_bad_masks_are_skipped_and_listed(oi, run, lite0, tmp_path):
    root, mask_root, meta = oi
    # Two more images: the astronaut with a truncated mask PNG, the cat again with a missing mask file.
    shutil.copytree(root, tmp_path / "dataset")
    root = tmp_path / "dataset"
    meta = root / "metadata/OpenImages/test"
    shutil.copyfile(sample_path("astronaut"), root / "test/cat/astronaut.png")
    shutil.copyfile(sample_path("chelsea"), root / "test/cat/chelsea_again.png")
    good = (root / "test/cat/chelsea_m0.png").read_bytes()
    (root / "test/cat/astronaut_m0.png").write_bytes(good[: len(good) // 2])
    ids = (meta / "image_ids.txt").read_text().split()
    ids[1:1] = ["test/cat/astronaut.png", "test/cat/chelsea_again.png"]  # between good images
    (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
    with open(meta / "class_labels.txt", "a") as f:
        f.write("test/cat/astronaut.png,560\ntest/cat/chelsea_again.png,281\n")
    with open(meta / "localization.txt", "a") as f:
        f.write("test/cat/astronaut.png,test/cat/astronaut_m0.png,\ntest/cat/chelsea_again.png,test/cat/gone.png,\n")
    ds = read_wsol_metadata(meta, root)
    s = evaluate(ds, lite0, batch_size=4, out_dir=tmp_path / "out", progress=False)
    assert s["n_images"] == 4 and s["n_failed"] == 2
    assert [f["image_id"] for f in s["failed"]] == ["test/cat/astronaut.png", "test/cat/chelsea_again.png"]
    assert "astronaut_m0.png is not a readable image" in s["failed"][0]["error"]
    assert "gone.png cannot be read (it does not exist)" in s["failed"][1]["error"]
    assert all("\n" not in f["error"] for f in s["failed"])
    # The four good images score exactly as in the clean run.
    assert s["pxap"] == run[0]["pxap"] and s["pxap_curve"] == run[0]["pxap_curve"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv", newline="")))
    assert len(rows) == 6 and [bool(r["error"]) for r in rows] == [False, True, True, False, False, False]


# ------------------------------------------------------------------------------------------------
# kill -9 the real command mid-run, resume with the CLI, compare with an uninterrupted run.


def _cli(root: Path, meta: Path, mask_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "camkit", "evaluate", "--dataset", "wsol", "--root", str(root),
            "--annotations", str(meta), "--mask-root", str(mask_root), "--out", str(out), "--batch-size", "3",
            "--workers", "0", "--tau-step", "0.001", "--no-progress", *extra]


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_uninterrupted_pxap(tmp_path, lite0):
    root, mask_root, meta = make_openimages(tmp_path, copies=3, separate_masks=True)
    ds = read_wsol_metadata(meta, root, mask_root)
    n = len(ds)
    assert n == 12 and ds[0].mask_paths[0].is_relative_to(tmp_path / "masks")

    out = tmp_path / "killed"
    records = out / "records.jsonl"
    kill_after_records(_cli(root, meta, mask_root, out), records, 3)  # batches of 3: one written
    done_before = read_records(records).records
    assert 3 <= len(done_before) < n
    # 1002 bins at tau step 0.001, stored as the span of non-zero bins: a record stays a few kB.
    assert max(len(json.dumps(r)) for r in done_before.values()) < 12000
    with open(records, "ab") as f:  # the worst case of a kill inside write(): a torn last line
        f.write(b'{"i":11,"id":"test/rocket/rocket_copy2.png","pxap":{"fg":[3')

    resumed = subprocess.run(_cli(root, meta, mask_root, out, "--resume"), env={**os.environ, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "PxAP" in resumed.stdout and "box metrics skipped" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["resumed_from"] == len(done_before)
    assert summary["run"]["evaluated_now"] == n - len(done_before)
    assert f"{summary['pxap']:.2f}" in resumed.stdout
    log = read_records(records)
    assert sorted(log.records) == list(range(n)) and log.torn_bytes == 0 and log.duplicates == 0
    assert all(log.records[i] == r for i, r in done_before.items())

    # Same batch size as the killed run (--resume refuses another): CPU kernels may round a map
    # differently in another batch shape, and at tau step 0.001 a last-bit change can move a pixel
    # to the next bin. The resumed run recomputes images in their original batches.
    reference = evaluate(ds, lite0, batch_size=3, tau_step=0.001, out_dir=tmp_path / "uninterrupted", progress=False)
    assert {k: summary[k] for k in DETERMINISTIC} == {k: reference[k] for k in DETERMINISTIC}
    assert summary["n_images"] == 12 and summary["pxap"] is not None
