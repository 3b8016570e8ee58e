"""``report.html``: one self-contained page for a ``camkit evaluate --out`` folder.

Everything is inside the file (styles, a small sort/filter script, the BoxAcc-vs-tau curves as inline
SVG, the run's PNG figures and one thumbnail per image as data URIs), so it opens from a ``file:`` URL
with no server and no network. It is built from the run folder's files only: the metrics from
``summary.json``/``records.jsonl``, and the thumbnails from the photos of the dataset the run names
(found and checked against the run's fingerprint by :func:`camkit.app.dataset_locate.locate_images`);
when those photos cannot be found the report says so and shows the table without thumbnails.

Thumbnails show the photo squashed to a square as the network's input was, under an SVG of the boxes
``records.jsonl`` holds on that input square: the ground-truth boxes (green) and the CVPR16 box of the
ground-truth class's map (red). Maps are not
stored in run folders and are not recomputed here (``camkit view`` does that).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from camkit.app.imaging import data_uri
from camkit.app.rundir import RunDir, image_rows, read_run_dir
from camkit.app.thumbnails import MAX_THUMBNAILS, start_thumbnails, thumbnail_threads
from camkit.evaluate.files import FIGURE_NAMES, REPORT_HTML_NAME

__all__ = ["write_report_html", "REPORT_HTML_NAME"]

_CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f6f7f9}
header{background:#111827;color:#f9fafb;padding:14px 22px}header h1{margin:0;font-size:18px;font-weight:600}
header .sub{color:#9ca3af;font-size:13px;margin-top:2px}
section{background:#fff;border:1px solid #e3e6ec;border-radius:10px;margin:14px 22px;padding:14px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.6px;color:#667085;margin:0 0 10px}
.nums{display:flex;flex-wrap:wrap;gap:10px}.num{border:1px solid #e3e6ec;border-radius:8px;padding:6px 12px;min-width:110px}
.num b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.num span{color:#667085;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:5px 7px;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:middle}
th{color:#667085;font-size:12px;cursor:pointer;user-select:none;position:sticky;top:0;background:#fff}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}div.t{position:relative;width:112px;height:112px}
img.t{width:112px;height:112px;border-radius:4px;display:block}div.t svg{position:absolute;inset:0;width:100%;height:100%}
div.t rect{fill:none;stroke-width:2;vector-effect:non-scaling-stroke}
.good{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}.muted{color:#667085}
.figs img{max-width:100%;border:1px solid #e3e6ec;border-radius:6px;margin:4px 0}
input{font:inherit;padding:3px 6px;border:1px solid #e3e6ec;border-radius:6px}
.legend{font-size:12px;color:#667085}.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin:0 4px 0 10px}
"""

_JS = """
(function(){var t=document.getElementById('imgs'),tb=t.tBodies[0],dir={};
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,c){th.addEventListener('click',function(){
 var d=dir[c]=-(dir[c]||-1),rows=Array.prototype.slice.call(tb.rows);
 rows.sort(function(a,b){var x=a.cells[c].getAttribute('data-v'),y=b.cells[c].getAttribute('data-v');
  if(x===''&&y==='')return 0;if(x==='')return 1;if(y==='')return -1;var fx=parseFloat(x),fy=parseFloat(y);
  if(!isNaN(fx)&&!isNaN(fy))return d*(fx-fy);return d*x.localeCompare(y);});
 rows.forEach(function(r){tb.appendChild(r)});});});
document.getElementById('q').addEventListener('input',function(e){var q=e.target.value.toLowerCase();
 Array.prototype.forEach.call(tb.rows,function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none'});});})();
"""


def _svg_curves(run: RunDir) -> str:
    """BoxAcc (percent) against tau: V1 and V2 at IoU 0.5 (V2 also 0.3 and 0.7), best tau marked."""
    w, h, left, right, top, bottom = 560, 260, 40, 12, 12, 30
    taus = run.taus

    def x(t: float) -> float:
        return left + t * (w - left - right)

    def y(v: float) -> float:
        return top + (1 - v / 100) * (h - top - bottom)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="BoxAcc against tau">',
             f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" fill="#fafbfc" stroke="#e3e6ec"/>']
    for v in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eef0f3"/>'
                     f'<text x="{left - 5}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" fill="#667085">{v}</text>')
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{x(t):.1f}" y="{h - 10}" font-size="10" text-anchor="middle" fill="#667085">{t:g}</text>')
    # V1 last so it is drawn on top where the curves coincide
    series = [("v2", 0.5, "#f97316", "V2 IoU 0.5", ""), ("v2", 0.3, "#f97316", "V2 IoU 0.3", "4 3"),
              ("v2", 0.7, "#f97316", "V2 IoU 0.7", "1 3"), ("v1", 0.5, "#2563eb", "MaxBoxAcc V1 (IoU 0.5)", "")]
    for k, (variant, iou, colour, name, dash) in enumerate(series):
        c = run.curve(variant, iou)
        pts = " ".join(f"{x(float(t)):.1f},{y(float(v)):.1f}" for t, v in zip(taus, c, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{w - right - 6}" y="{top + 14 + 13 * k}" font-size="11" text-anchor="end" fill="{colour}">{html.escape(name)}: max {c.max():.1f}</text>')
    b = run.best_tau_index("v1")
    c1 = run.curve("v1", 0.5)
    parts.append(f'<circle cx="{x(float(taus[b])):.1f}" cy="{y(float(c1[b])):.1f}" r="4" fill="#2563eb"/>'
                 f'<text x="{x(float(taus[b])) + 6:.1f}" y="{y(float(c1[b])) + 14:.1f}" font-size="11" fill="#2563eb">tau* {taus[b]:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


_BOX_LEGEND = ('<span class="legend"><i style="background:#22c55e"></i>ground truth<i style="background:#f43f5e"></i>'
               'CVPR16 box (GT class)</span>')
_PXAP_NOTE = ('<section><h2>Masks, no boxes</h2><p class="muted">This dataset has ground-truth masks and no boxes: '
              'the box metrics (MaxBoxAcc, top-k localization) were not computed. "PxAP" is each image\'s pixel '
              'average precision; the precision-recall curve of the whole run is at the end.</p></section>')


def _box_section(run: RunDir) -> str:
    """The BoxAcc-against-tau curve and what the table's box columns mean."""
    return (f'<section><h2>BoxAcc against tau</h2>{_svg_curves(run)}\n<p class="muted">Per image, "IoU @tau*" is its '
            'largest-contour (V1) IoU at the run\'s MaxBoxAcc threshold tau*; "correct" is IoU &gt;= 0.5 there.\n"best IoU" '
            'is the image\'s own best over all thresholds; "CVPR16 IoU" is the CVPR16 box (tau 0.2 of the max) of the GT '
            "class's map.</p></section>")


def _thumb_cell(uri: str, image_id: str, row: dict, size: int) -> str:
    """The thumbnail (the photo squashed to a square) under an SVG of the boxes on the ``size`` input square:
    GT green, the GT class's CVPR16 box red; a box of inclusive pixels x0..x1 covers [x0, x1 + 1)."""
    rects = [(b, "#22c55e") for b in row.get("gt_boxes", [])] + (
        [(row["cvpr16_box"], "#f43f5e")] if row.get("cvpr16_box") else [])
    svg = "".join(f'<rect x="{x0}" y="{y0}" width="{x1 - x0 + 1}" height="{y1 - y0 + 1}" stroke="{colour}"/>'
                  for (x0, y0, x1, y1), colour in rects)
    return (f'<div class="t"><img class="t" alt="{html.escape(image_id)}" src="{uri}">'
            f'<svg viewBox="0 0 {size} {size}" preserveAspectRatio="none">{svg}</svg></div>')


def _fmt(v, digits: int = 3) -> tuple[str, str]:
    """(shown text, sort value) of a cell."""
    if v is None:
        return "–", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), ("1" if v else "0")
    if isinstance(v, float):
        return f"{v:.{digits}f}", repr(v)
    return html.escape(str(v)), html.escape(str(v))


def write_report_html(run_dir: str | Path | RunDir, out: str | Path | None = None, images: dict[str, Path] | None = None,
                      thumbnails: Mapping[int, Future] | None = None,
                      figures_ready: Callable[[], None] | None = None) -> Path:
    """Write the self-contained report of a run folder; returns its path (default ``run_dir/report.html``).

    Args:
        run_dir: a ``camkit evaluate --out`` folder (needs ``run.json`` or ``summary.json`` and ``records.jsonl``),
            or such a folder already read.
        out: where to write the file (default inside ``run_dir``).
        images: image id -> photo path; None finds the run's dataset from its summary (thumbnails are
            left out when it cannot be found).
        thumbnails: record index -> future of its thumbnail, already started (:func:`start_thumbnails`);
            the images the report shows without one here are made now.
        figures_ready: called (and waited for) just before the run's figures are read from ``run_dir``, so
            they can still be being drawn while the rest of the report is made.
    """
    run = run_dir if isinstance(run_dir, RunDir) else read_run_dir(run_dir)
    target = Path(out) if out is not None else run.path / REPORT_HTML_NAME
    rows = image_rows(run)
    note = ""
    if images is None:
        from camkit.app.dataset_locate import locate_images

        try:
            images = locate_images(run)
        except Exception as e:  # noqa: BLE001 - the report is still useful without thumbnails
            images = {}
            note = f"Thumbnails left out: {e}"
    # A run on masks only (PxAP) has no boxes: no box columns, curve or best tau; its images are ranked by PxAP.
    has_boxes = run.has_boxes
    rank_key = "iou" if has_boxes else "pxap"
    # thumbnails for the worst and best images first when there are too many
    scored = sorted((r for r in rows if rank_key in r), key=lambda r: r[rank_key])
    chosen = {r["i"] for r in (scored if len(scored) <= MAX_THUMBNAILS else
                               scored[: MAX_THUMBNAILS // 2] + scored[-MAX_THUMBNAILS // 2:])}
    if len(scored) > MAX_THUMBNAILS:
        note = (note + " " if note else "") + f"Thumbnails for the {MAX_THUMBNAILS // 2} worst and best images only."

    nums = run.summary_numbers()
    has_pxap = any("pxap" in r for r in rows)
    has_faith = any("deletion" in r for r in rows)
    cards = []
    for label, key in (("MaxBoxAcc (V1)", "maxboxacc"), ("MaxBoxAccV2", "maxboxacc_v2"), ("GT-known loc", "gt_known_loc"),
                       ("top-1 loc", "top1_loc"), ("top-5 loc", "top5_loc"), ("top-1 cls", "top1_cls"),
                       ("top-5 cls", "top5_cls"), ("PxAP", "pxap")):
        v = nums.get(key)
        if v is not None:
            cards.append(f'<div class="num"><b>{v:.1f}</b><span>{label} %</span></div>')
    cards.append(f'<div class="num"><b>{len(rows)}</b><span>images ({nums.get("n_failed") or 0} failed)</span></div>')
    if has_boxes:
        b = run.best_tau_index("v1")
        cards.append(f'<div class="num"><b>{run.taus[b]:.2f}</b><span>best tau (V1)</span></div>')

    head = ['<th>image</th>', '<th class="n">#</th>', "<th>image id</th>", "<th>class</th>", "<th>top-1</th>"]
    box_keys: tuple[str, ...] = ()
    if has_boxes:
        head += ['<th class="n">IoU @tau*</th>', "<th>correct</th>", '<th class="n">best IoU</th>',
                 '<th class="n">CVPR16 IoU</th>']
        box_keys = ("iou", "correct", "best_iou", "gt_known_iou")
    if has_pxap:
        head.append('<th class="n">PxAP</th>')
    if has_faith:
        head += ['<th class="n">deletion</th>', '<th class="n">insertion</th>']
    started = dict(thumbnails or {})
    wanted = [r for r in rows if r["i"] in chosen and r["i"] not in started and str(r["id"]) in images]
    with ThreadPoolExecutor(thumbnail_threads()) as pool:
        now = start_thumbnails(pool, ((r["i"], images[str(r["id"])]) for r in wanted))
        uris = {i: f.result() for i, f in {**started, **now}.items() if i in chosen}
    body = []
    for r in rows:
        thumb = ""
        uri = uris.get(r["i"])
        if uri:
            thumb = _thumb_cell(uri, str(r["id"]), r, run.input_size)
        if "error" in r:
            body.append(f'<tr><td data-v=""></td><td class="n" data-v="{r["i"]}">{r["i"]}</td><td data-v="{html.escape(r["id"])}">'
                        f'{html.escape(r["id"])}</td><td colspan="{len(head) - 3}" class="bad" data-v="">{html.escape(r["error"])}</td></tr>')
            continue
        cls_text = html.escape(f'{r.get("gt_name") or ""} ({r["gt"]})')
        top1 = "yes" if r.get("cls_correct") else html.escape(f'{r.get("top1_name") or r.get("top1")}')
        cells = [f'<td data-v="">{thumb}</td>', f'<td class="n" data-v="{r["i"]}">{r["i"]}</td>',
                 f'<td data-v="{html.escape(r["id"])}">{html.escape(r["id"])}</td>', f'<td data-v="{cls_text}">{cls_text}</td>',
                 f'<td data-v="{1 if r.get("cls_correct") else 0}" class="{"good" if r.get("cls_correct") else "bad"}">{top1}</td>']
        for key in box_keys + (("pxap",) if has_pxap else ()) + (("deletion", "insertion") if has_faith else ()):
            text, v = _fmt(r.get(key), 1 if key == "pxap" else 3)
            cls = "n" if key != "correct" else ("good" if r.get("correct") else "bad")
            cells.append(f'<td class="{cls}" data-v="{v}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")

    if figures_ready is not None:
        figures_ready()
    figs = []
    for name in FIGURE_NAMES:
        p = run.path / name
        if p.is_file():
            figs.append(f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="{data_uri(p.read_bytes(), "image/png")}">')
    model = run.model
    title = f"{model.get('name', '?')} · {run.method} · {run.dataset.get('name', '')}"
    protocol = html.escape(json.dumps(run.protocol, indent=1))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>camkit report: {html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<header><h1>{html.escape(title)}</h1><div class="sub">{html.escape(str(run.path))} · weights {html.escape(str(model.get('weights')))} ·
input {run.input_size} · {len(run.taus)} thresholds</div></header>
<section><h2>Summary</h2><div class="nums">{''.join(cards)}</div></section>
{_box_section(run) if has_boxes else _PXAP_NOTE}
<section><h2>Images ({len(rows)})</h2>
<div style="margin-bottom:8px"><input id="q" placeholder="filter…"> {_BOX_LEGEND if has_boxes else ""}
<span class="muted">{html.escape(note)}</span> <span class="muted">Click a column to sort.</span></div>
<table id="imgs"><thead><tr>{''.join(head)}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></section>
<section class="figs">{''.join(figs) or '<span class="muted">No figures in the run folder.</span>'}</section>
<section><h2>Protocol</h2><pre style="font-size:12px;white-space:pre-wrap">{protocol}</pre></section>
<script>{_JS}</script>
</body></html>
"""
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(target)
    return target
