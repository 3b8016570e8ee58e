"""Galleries without a second forward: the loop keeps the GT-class maps of the images that can still be among
the best or worst (``GalleryMaps``), so a fresh run forwards each image once; a resumed run forwards only the
gallery images it did not compute, and both draw the same panels."""

from __future__ import annotations

import random

import numpy as np

from camkit.cam.sources import make_map_source
from camkit.datasets import read_ilsvrc
from camkit.evaluate import evaluate
from camkit.evaluate.gallery import GalleryMaps, gallery_panels, select_extremes
from camkit.evaluate.protocol import Protocol
from camkit.evaluate.results import BoxResult, FailedImage, ImageRecord


def _record(i: int, iou: float) -> ImageRecord:
    boxes = BoxResult(gt_boxes=[[0, 0, 1, 1]], cvpr16_boxes=[[0, 0, 1, 1]], cvpr16_ious=[iou], v1=[iou], v2=[iou])
    return ImageRecord(index=i, image_id=str(i), width=2, height=2, gt_class=0, topk=[0], scores=[1.0], boxes=boxes)


def test_kept_maps_cover_every_pick_in_any_order():
    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(1, 4)
        # few distinct IoUs: many ties, broken by index as select_extremes does
        records = [_record(i, rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])) for i in range(rng.randint(0, 30))]
        offered = records[:]
        rng.shuffle(offered)
        kept = GalleryMaps(n)
        for r in offered:
            kept.offer(r, np.full((2, 2), r.index, np.float32))
        kept.offer(FailedImage(99, "bad", "unreadable"), np.zeros((2, 2), np.float32))  # no box values: ignored
        best, worst = select_extremes(records, n)
        picked = {r.index for r in best + worst}
        assert picked <= set(kept.maps), trial
        assert len(kept.maps) <= 2 * n and all(float(kept.maps[i][0, 0]) == i for i in kept.maps)


def _counting(source):
    calls: list[int] = []

    def counted(x, gt):
        calls.append(int(x.shape[0]))
        return source(x, gt)

    return counted, calls


def test_fresh_run_forwards_each_image_once_and_resume_draws_the_same_panels(lite0, ilsvrc_sample, tmp_path, monkeypatch):
    from camkit.evaluate import plots

    drawn: dict[str, list[dict]] = {}
    monkeypatch.setattr(plots, "plot_gallery", lambda panels, path, title: drawn.__setitem__(path.name, panels))
    source, calls = _counting(make_map_source(lite0))
    run = dict(batch_size=5, gallery_size=2, progress=False, tau_step=0.05, map_source=source)
    first = evaluate(read_ilsvrc(ilsvrc_sample), lite0, out_dir=tmp_path / "a", **run)
    assert calls == [5, 5, 2]  # the loop's batches only: no gallery forward
    assert {"gallery_best", "gallery_worst"} <= set(first["run"]["files"])
    fresh, drawn = drawn, {}

    # everything resumed: only the galleries' images are forwarded (2 best, then 2 worst), for the same panels
    calls.clear()
    evaluate(read_ilsvrc(ilsvrc_sample), lite0, out_dir=tmp_path / "a", resume=True, **run)
    assert calls == [2, 2]
    assert fresh.keys() == drawn.keys() == {"gallery_best.png", "gallery_worst.png"}
    for name, panels in fresh.items():
        assert [p["title"] for p in panels] == [p["title"] for p in drawn[name]]
        for kept, again in zip(panels, drawn[name], strict=True):
            assert np.array_equal(kept["image"], again["image"]) and kept["pred_box"] == again["pred_box"]
            # another batch composition may round the forward differently in the last bits
            np.testing.assert_allclose(kept["cam"], again["cam"], rtol=1e-4, atol=1e-4 * float(np.abs(kept["cam"]).max()))


def test_gallery_panels_use_kept_maps_and_compute_the_rest(lite0, ilsvrc_sample):
    samples = read_ilsvrc(ilsvrc_sample).samples[:3]
    chosen = [_record(i, 0.5) for i in range(3)]
    source, calls = _counting(make_map_source(lite0))
    pre = lite0.preprocess.with_input_size(224)
    kept = GalleryMaps(3)
    marker = np.full((7, 7), 3.0, np.float32)
    kept.offer(chosen[1], marker)
    panels = gallery_panels(chosen, samples, source, pre, Protocol(), None, kept)
    assert calls == [2]  # images 0 and 2 only
    assert np.allclose(panels[1]["cam"], 3.0)  # the kept map, resized
    again = gallery_panels(chosen, samples, source, pre, Protocol(), None)
    assert calls == [2, 3] and np.array_equal(panels[0]["image"], again[0]["image"])


def test_gallery_boxes_sit_on_the_boxes_pixel_edges(tmp_path):
    """Panels are drawn as one picture: a box on inclusive input pixels x0..x1 spans the pixels' outer edges
    x0 - 0.5 .. x1 + 0.5, scaled to the panel (GT solid green, predicted dashed red); the PNG is RGB."""
    from PIL import Image

    from camkit.evaluate import plots

    grey = np.full((224, 224, 3), 128, np.uint8)
    panel = {"image": grey, "cam": np.zeros((224, 224), np.float32), "gt_boxes": [[10, 20, 100, 150]],
             "pred_box": [120, 30, 200, 210], "title": "x"}
    pic = plots._panel_picture(panel).astype(int)
    s = plots._PANEL_PX / 224
    green = (pic[..., 1] - pic[..., 0] > 60) & (pic[..., 1] - pic[..., 2] > 60)
    red = (pic[..., 0] - pic[..., 1] > 60) & (pic[..., 0] - pic[..., 2] > 60)
    mid_y = int(85 * s)
    cols = np.flatnonzero(green[mid_y])
    assert abs(cols.min() - 9.5 * s) <= 1.5 and abs(cols.max() - 100.5 * s) <= 1.5, cols
    rows = np.flatnonzero(green[:, int(55 * s)])
    assert abs(rows.min() - 19.5 * s) <= 1.5 and abs(rows.max() - 150.5 * s) <= 1.5, rows
    # the predicted box's top edge is dashed: red runs with gaps between them, along its whole length
    top = red[int(round(29.5 * s)) - 1 : int(round(29.5 * s)) + 2].any(axis=0)[int(120 * s) : int(200 * s)]
    runs = np.diff(np.concatenate([[0], top.astype(int), [0]]))
    assert (runs == 1).sum() >= 6 and 0.4 < top.mean() < 0.85, top.mean()
    plots.plot_gallery([panel] * 4, tmp_path / "g.png", "title")
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "RGB" and im.size == (3 * plots._COLUMN_PX, plots._HEAD_PX + 2 * plots._ROW_PX + plots._FOOT_PX)
