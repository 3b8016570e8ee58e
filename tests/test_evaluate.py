"""camkit.evaluate on the real ILSVRC sample: layouts agree, numbers equal a brute-force reference,
unreadable images are skipped, CLI errors are one line."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from camkit.evaluate import METRIC_KEYS, Protocol, evaluate, summarize
from camkit.evaluate.records import iter_records

pytestmark = pytest.mark.shared

DETERMINISTIC = [k for k in METRIC_KEYS] + ["protocol", "model"]


def _metrics(summary: dict) -> dict:
    return {k: summary[k] for k in DETERMINISTIC}


@pytest.fixture(scope="module")
def sample() -> Path:
    # ../shared next to the repository root; skipped with a reason when absent.
    path = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"
    if not (path / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {path} (needs ../shared beside the repository)")
    return path


@pytest.fixture(scope="module")
def xml_run(sample, lite0, tmp_path_factory):
    from camkit.datasets import read_ilsvrc_xml

    out = tmp_path_factory.mktemp("xml_run")
    ds = read_ilsvrc_xml(sample / "val", sample / "bbox")
    return evaluate(ds, lite0, batch_size=12, out_dir=out, progress=False), out, ds


# ------------------------------------------------------------------------------------------------
# An independent brute-force implementation, written from the papers' text and wsolevaluation's
# published procedure; it shares nothing with camkit.localize / camkit.metrics / camkit.evaluate.


def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0, iw) * max(0, ih)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def _wsol_boxes(u8: np.ndarray, tau: float, all_contours: bool) -> list:
    h, w = u8.shape
    _, binary = cv2.threshold(u8, int(tau * np.max(u8)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]]
    if not all_contours:
        contours = [max(contours, key=cv2.contourArea)]
    out = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        out.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
    return out


def _cvpr16_box(cam: np.ndarray) -> list:
    from skimage.measure import label, regionprops

    m = np.maximum(cam, 0)
    mask = m >= 0.2 * m.max()
    regions = regionprops(label(mask, connectivity=2))
    r = max(regions, key=lambda r: r.area)  # first largest in label (raster) order
    y0, x0, y1, x1 = r.bbox
    return [x0, y0, x1 - 1, y1 - 1]


def _brute_force(model, ds, size=224, step=0.01) -> dict:
    import torch

    taus = np.arange(0, 1, step)
    deltas = (0.3, 0.5, 0.7)
    hits = {v: np.zeros((3, len(taus)), dtype=int) for v in ("v1", "v2")}
    n = top1c = top5c = top1l = top5l = gtk = 0
    w_fc = model.classifier.weight.detach().numpy().astype(np.float64)
    for s in ds.samples:
        img = Image.open(s.image_path).convert("RGB")
        W, H = img.size
        x = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
        x = (x - 0.5) / 0.5  # Lite0's mean = std = 0.5
        with torch.no_grad():
            feats = model.features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
            logits = model.head(feats)[0].numpy()
        f = feats[0].numpy().astype(np.float64)
        top5 = [int(c) for c in np.argsort(-logits, kind="stable")[:5]]
        gt = s.class_index
        gt_boxes = [[int(b[0] * size / W), int(b[1] * size / H), int(b[2] * size / W), int(b[3] * size / H)] for b in s.boxes]

        cam = np.tensordot(w_fc[gt], f, axes=1).astype(np.float32)  # M_c = sum_k w[c,k] F_k
        cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
        loc_ok = max(_iou(_cvpr16_box(cam), g) for g in gt_boxes) >= 0.5

        n += 1
        top1c += top5[0] == gt
        top5c += gt in top5
        top1l += top5[0] == gt and loc_ok
        top5l += gt in top5 and loc_ok
        gtk += loc_ok
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        u8 = (cam * 255).astype(np.uint8)
        for t, tau in enumerate(taus):
            for v, all_c in (("v1", False), ("v2", True)):
                best = max(_iou(b, g) for b in _wsol_boxes(u8, tau, all_c) for g in gt_boxes)
                for d, delta in enumerate(deltas):
                    hits[v][d, t] += best >= delta
    acc = {v: hits[v] * 100.0 / n for v in hits}
    return {
        "top1_cls": top1c * 100.0 / n, "top5_cls": top5c * 100.0 / n, "top1_loc": top1l * 100.0 / n,
        "top5_loc": top5l * 100.0 / n, "gt_known_loc": gtk * 100.0 / n,
        "maxboxacc": acc["v1"][1].max(),
        "maxboxacc_v2": float(np.mean(acc["v2"].max(axis=1))),
        "maxboxacc_v2_per_iou": {k: acc["v2"][d].max() for d, k in enumerate(("30", "50", "70"))},
        "best_tau_v2": {k: float(taus[np.argmax(acc["v2"][d])]) for d, k in enumerate(("30", "50", "70"))},
        "curve_v1_50": acc["v1"][1].tolist(),
    }


# ------------------------------------------------------------------------------------------------


def test_numbers_equal_brute_force(xml_run, lite0):
    summary, _, ds = xml_run
    ref = _brute_force(lite0, ds)
    assert summary["n_images"] == 12 and summary["n_failed"] == 0
    for key in ("top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc", "maxboxacc", "maxboxacc_v2"):
        assert summary[key] == pytest.approx(ref[key], abs=1e-9), key
    assert summary["maxboxacc_v2_per_iou"] == pytest.approx(ref["maxboxacc_v2_per_iou"], abs=1e-9)
    assert summary["best_tau"]["v2"] == pytest.approx(ref["best_tau_v2"], abs=1e-9)
    assert summary["curves"]["v1"]["50"] == pytest.approx(ref["curve_v1_50"], abs=1e-9)
    # A real sample, real numbers: the model classifies most of these photos and localizes some.
    assert 50 <= summary["top1_cls"] <= 100 and 0 < summary["maxboxacc_v2"] < 100


def test_three_ilsvrc_layouts_give_the_same_summary(xml_run, sample, lite0):
    from camkit.datasets import read_ilsvrc_kaggle, read_wsol_metadata

    xml_summary = xml_run[0]
    kaggle = evaluate(read_ilsvrc_kaggle(sample / "val", sample / "LOC_val_solution.csv"), lite0, batch_size=12, progress=False)
    wsol = evaluate(read_wsol_metadata(sample / "metadata/ILSVRC/test", sample), lite0, batch_size=12, progress=False)
    assert _metrics(kaggle) == _metrics(xml_summary)
    assert _metrics(wsol) == _metrics(xml_summary)
    assert kaggle["dataset"]["source"] != xml_summary["dataset"]["source"]


def test_output_files(xml_run):
    summary, out, ds = xml_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert _metrics(on_disk) == _metrics(summary)
    for key in ("maxboxacc_v2_per_iou", "maxboxacc_per_iou"):
        assert set(on_disk[key]) == {"30", "50", "70"}
    assert on_disk["protocol"]["resize"] == "squash" and on_disk["protocol"]["n_taus"] == 100
    rows = list(csv.DictReader(open(out / "per_image.csv", newline="")))
    assert [r["image_id"] for r in rows] == [s.image_id for s in ds.samples]
    # The CSV's GT-known IoUs reproduce the summary's GT-known localization.
    assert sum(float(r["gt_known_iou"]) >= 0.5 for r in rows) * 100 / 12 == pytest.approx(summary["gt_known_loc"])
    for name in ("boxacc_vs_tau.png", "gallery_best.png", "gallery_worst.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 200 and img.std() > 10, name
    report = (out / "report.md").read_text()
    assert "56.40" in report and "63.7" in report and "Not comparable" in report
    assert f"{summary['maxboxacc_v2']:.2f}" in report


def test_summary_ignores_record_order(xml_run):
    summary, out, _ = xml_run
    records = list(iter_records(out / "records.jsonl"))
    random.Random(0).shuffle(records)
    again = summarize(records, Protocol(), model=summary["model"], dataset=summary["dataset"])
    assert _metrics(again) == _metrics(summary)


def test_unreadable_images_are_skipped_and_listed(sample, lite0, xml_run, tmp_path):
    src = sample / "val" / "ILSVRC2012_val_00000001.JPEG"
    (tmp_path / "truncated.JPEG").write_bytes(src.read_bytes()[:3000])
    (tmp_path / "notes.JPEG").write_text("not an image\n")
    lines = (sample / "metadata/ILSVRC/test/localization.txt").read_text().split()
    labels = dict(line.split(",") for line in (sample / "metadata/ILSVRC/test/class_labels.txt").read_text().split())
    rows = ["image_path,class_index,x1,y1,x2,y2"]
    for i, line in enumerate(lines):
        rel, *box = line.split(",")
        rows.append(f"{sample / rel},{labels[rel]},{','.join(box)}")
        if i == 3:  # the bad files sit between good ones
            rows.append(f"truncated.JPEG,{labels[rel]},10,10,100,100")
            rows.append("notes.JPEG,1,0,0,5,5")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    from camkit.datasets import read_csv_boxes

    ds = read_csv_boxes(tmp_path / "boxes.csv", tmp_path)
    assert len(ds) == 14
    s = evaluate(ds, lite0, batch_size=5, out_dir=tmp_path / "out", progress=False, gallery_size=0)
    assert s["n_images"] == 12 and s["n_failed"] == 2
    assert [f["image_id"] for f in s["failed"]] == ["truncated.JPEG", "notes.JPEG"]
    assert "truncated" in s["failed"][0]["error"] and "text file" in s["failed"][1]["error"]
    # The 12 readable photos score exactly as in the XML run.
    good = {k: s[k] for k in METRIC_KEYS if k not in ("n_failed",)}
    assert good == {k: xml_run[0][k] for k in good}
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv", newline="")))
    assert len(rows) == 14 and sum(bool(r["error"]) for r in rows) == 2


# ------------------------------------------------------------------------------------------------
# CLI errors: one line on stderr, non-zero exit, no traceback.


def _cli(args):
    from typer.testing import CliRunner

    from camkit.cli.app import app

    return CliRunner().invoke(app, ["evaluate", *args])


def _one_line_error(result) -> str:
    err = result.stderr.strip() if hasattr(result, "stderr") else result.output.strip()
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:")
    return err


def test_cli_missing_root():
    assert "--root is required" in _one_line_error(_cli(["--dataset", "ilsvrc"]))


def test_cli_unknown_dataset_kind(tmp_path):
    msg = _one_line_error(_cli(["--dataset", "coco", "--root", str(tmp_path)]))
    assert "coco" in msg and "ilsvrc, cub, wsol, csv" in msg


def test_cli_malformed_annotations(tmp_path):
    (tmp_path / "boxes.csv").write_text("image_path,class_index,x1,y1,x2,y2\na.jpg,3,1,2,30,40\nb.jpg,three,1,2,3,4\n")
    msg = _one_line_error(_cli(["--dataset", "csv", "--root", str(tmp_path), "--annotations", str(tmp_path / "boxes.csv")]))
    assert "boxes.csv line 3" in msg


def test_cli_refuses_to_overwrite_without_resume(tmp_path, sample):
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text('{"i":0,"id":"x","error":"e"}\n')
    msg = _one_line_error(_cli(["--dataset", "ilsvrc", "--root", str(sample), "--out", str(out), "--no-progress"]))
    assert "--resume" in msg
