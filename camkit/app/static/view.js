// camkit view: one or two evaluation runs. Every image's boxes at every tau arrive once per image, so
// moving the tau cursor redraws boxes (and the live IoU column) without asking the server.
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = ["#2563eb", "#f97316"];
const S = { runs: [], rows: [], shown: [], sort: null, page: 400, boxes: {}, imgs: {}, detail: null };

function showError(m) { $("error").textContent = m; $("error").classList.add("show"); }
async function api(url) {
  const r = await fetch(url); let d;
  try { d = await r.json(); } catch (_) { d = { error: `HTTP ${r.status}` }; }
  if (!r.ok || d.error) throw new Error(d.error || `HTTP ${r.status}`);
  return d;
}
const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
function tauIdx() { return Number($("tau").value); }
// a run on masks only (PxAP) has no ground-truth boxes: no IoU columns, BoxAcc curve or best tau
const hasBoxes = () => S.runs[0].has_boxes !== false;
function iouIncl(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]) + 1), iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]) + 1);
  const inter = ix * iy, ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter;
  return ua > 0 ? inter / ua : 0;
}

function columns() {
  const two = S.runs.length > 1, a = S.rows.find((r) => r.runs[0] && !r.error) || {};
  const ra = (a.runs && a.runs[0]) || {};
  const cols = [
    { key: "thumb", label: two ? "A | B" : "image", sortable: false },
    { key: "i", label: "#", num: true, get: (r) => r.i },
    { key: "id", label: "image id", get: (r) => r.id },
    { key: "gt_name", label: "class", get: (r) => r.gt_name || String(r.gt) },
  ];
  if (hasBoxes()) cols.push(
    { key: "iou", label: two ? "IoU A @τ*" : "IoU @τ*", num: true, get: (r) => val(r, 0, "iou") },
    { key: "live", label: "IoU @cursor", num: true, get: (r) => liveIou(r, 0) },
    { key: "correct", label: "correct", get: (r) => val(r, 0, "correct") },
    { key: "gt_known_iou", label: "CVPR16 IoU", num: true, get: (r) => val(r, 0, "gt_known_iou") });
  cols.push({ key: "cls", label: "top-1", get: (r) => val(r, 0, "cls_correct") });
  if ("pxap" in ra) cols.push({ key: "pxap", label: "PxAP", num: true, get: (r) => val(r, 0, "pxap") });
  for (const k of ["deletion", "insertion"]) if (k in ra) cols.push({ key: k, label: k === "deletion" ? "deletion ↓" : "insertion ↑", num: true, get: (r) => val(r, 0, k) });
  if (two && hasBoxes()) {
    cols.push({ key: "iou_b", label: "IoU B @τ*", num: true, get: (r) => val(r, 1, "iou") });
    cols.push({ key: "live_b", label: "B @cursor", num: true, get: (r) => liveIou(r, 1) });
    cols.push({ key: "disagreement", label: "|Δ IoU|", num: true, get: (r) => r.disagreement });
  }
  return cols;
}
function val(r, k, key) { const x = r.runs && r.runs[k]; return x ? x[key] : null; }
function liveIou(r, k) { const v = r.v1 && r.v1[k]; return v ? v[Math.min(tauIdx(), v.length - 1)] : null; }

function buildHead() {
  const tr = $("head"); tr.innerHTML = "";
  for (const c of columns()) {
    const th = document.createElement("th"); th.textContent = c.label; th.dataset.key = c.key;
    if (c.num) th.classList.add("num");
    if (c.sortable !== false) {
      th.classList.add("sortable");
      th.addEventListener("click", () => {
        S.sort = S.sort && S.sort.key === c.key ? { key: c.key, dir: -S.sort.dir } : { key: c.key, dir: 1 };
        render();
      });
    }
    if (S.sort && S.sort.key === c.key) th.classList.add(S.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
    tr.appendChild(th);
  }
}

function filtered() {
  const q = $("filter").value.trim().toLowerCase(), mode = $("filter-correct").value;
  let rows = S.rows.filter((r) => {
    if (q && !(`${r.id} ${r.gt_name || ""} ${r.gt}`.toLowerCase().includes(q))) return false;
    if (mode === "correct") return val(r, 0, "correct") === true;
    if (mode === "incorrect") return val(r, 0, "correct") === false;
    if (mode === "disagree") return r.disagreement !== null && r.disagreement > 0;
    return true;
  });
  if (S.sort) {
    const col = columns().find((c) => c.key === S.sort.key);
    const key = (r) => { const v = col.get(r); return v === null || v === undefined ? null : typeof v === "boolean" ? Number(v) : v; };
    rows = rows.slice().sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null && y === null) return a.i - b.i;
      if (x === null) return 1; if (y === null) return -1;   // missing values last either way
      if (x < y) return -S.sort.dir; if (x > y) return S.sort.dir; return a.i - b.i;
    });
  }
  return rows;
}

function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }

function render() {
  buildHead();
  const rows = filtered(); S.shown = rows;
  const tb = $("images").querySelector("tbody"); tb.innerHTML = "";
  const cols = columns();
  rows.slice(0, S.page).forEach((r) => {
    const tr = document.createElement("tr"); tr.dataset.i = r.i; tr.dataset.id = r.id;
    for (const c of cols) {
      if (c.key === "thumb") {
        const td = document.createElement("td"); const box = document.createElement("div"); box.className = "thumbs";
        S.runs.forEach((_, k) => {
          const cv = document.createElement("canvas"); cv.className = "thumb"; cv.width = 224; cv.height = 224;
          cv.dataset.run = k; cv.dataset.i = r.runs[k] ? r.runs[k].i : ""; box.appendChild(cv); observer.observe(cv);
        });
        td.appendChild(box); tr.appendChild(td); continue;
      }
      const v = c.get(r);
      if (r.error && c.key === "gt_name") { cell(tr, r.error, "muted"); continue; }
      if (typeof v === "boolean") {
        const td = cell(tr, "", ""); const t = document.createElement("span"); t.className = "tag " + (v ? "good" : "bad");
        t.textContent = v ? "yes" : "no"; td.appendChild(t); continue;
      }
      cell(tr, c.num ? (c.key === "i" ? String(v) : fmt(v, c.key === "pxap" ? 1 : 3)) : (v ?? "–"), (c.num ? "num mono " : "") + c.key);
    }
    tr.addEventListener("click", () => showDetail(r));
    tb.appendChild(tr);
  });
  $("count").textContent = `${rows.length} of ${S.rows.length} images`;
  $("more").hidden = rows.length <= S.page;
  redrawAll();
}

function loadImg(url) {
  if (!S.imgs[url]) S.imgs[url] = new Promise((res, rej) => { const im = new Image(); im.onload = () => res(im); im.onerror = () => rej(new Error(url)); im.src = url; });
  return S.imgs[url];
}
async function dataFor(k, i) {
  const key = `${k}/${i}`;
  if (!S.boxes[key]) S.boxes[key] = (async () => {
    const b = await api(`/api/run/${k}/image/${i}/boxes`);
    const [photo, heat] = await Promise.all([loadImg(`/api/run/${k}/image/${i}/photo.png`), loadImg(`/api/run/${k}/image/${i}/heat.png`)]);
    return { ...b, photo, heat };
  })();
  return S.boxes[key];
}
function rowOf(k, i) { return S.rows.find((r) => r.runs[k] && r.runs[k].i === i); }

function paint(cv, d, rk) {
  const ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  const s = W / d.photo.naturalWidth;
  ctx.clearRect(0, 0, W, H);
  ctx.globalAlpha = 1; ctx.drawImage(d.photo, 0, 0, W, H);
  ctx.globalAlpha = Number($("opacity").value) / 100; ctx.drawImage(d.heat, 0, 0, W, H); ctx.globalAlpha = 1;
  const lw = Math.max(2, W / 110);
  const rect = (b, color, dash) => {
    // a dark halo under each box keeps it visible on any part of the JET colours
    const r = [b[0] * s, b[1] * s, (b[2] - b[0] + 1) * s, (b[3] - b[1] + 1) * s];
    ctx.setLineDash(dash || []); ctx.strokeStyle = "rgba(0,0,0,.55)"; ctx.lineWidth = lw + 2; ctx.strokeRect(...r);
    ctx.strokeStyle = color; ctx.lineWidth = lw; ctx.strokeRect(...r);
  };
  if (rk && rk.cvpr16_box) rect(rk.cvpr16_box, "#60a5fa", [lw * 2, lw * 2]);
  for (const g of (rk && rk.gt_boxes) || []) rect(g, "#22c55e");
  const t = Math.min(tauIdx(), d.v1.length - 1);
  for (const b of ($("v2").checked ? d.v2 : d.v1)[t]) rect(b, "#f43f5e");
  ctx.setLineDash([]);
}

async function drawThumb(cv) {
  const k = Number(cv.dataset.run), i = Number(cv.dataset.i);
  if (cv.dataset.i === "") return;
  try {
    const d = await dataFor(k, i); const r = rowOf(k, i);
    paint(cv, d, r && r.runs[k]); cv.dataset.drawn = "1";
  } catch (e) { cv.dataset.drawn = "error"; cv.title = e.message; }
}
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) if (e.isIntersecting) { e.target.dataset.visible = "1"; drawThumb(e.target); }
}, { rootMargin: "300px" });

function redrawAll() {
  document.querySelectorAll("canvas.thumb[data-visible='1']").forEach(drawThumb);
  if (S.detail) showDetail(S.detail, true);
  // live IoU columns follow the cursor
  document.querySelectorAll("#images tbody tr").forEach((tr) => {
    const r = S.rows.find((x) => String(x.i) === tr.dataset.i);
    const a = tr.querySelector("td.live"); if (a) a.textContent = fmt(liveIou(r, 0));
    const b = tr.querySelector("td.live_b"); if (b) b.textContent = fmt(liveIou(r, 1));
  });
}

async function showDetail(r, quiet) {
  S.detail = r;
  const box = $("detail");
  if (!quiet) {
    box.innerHTML = `<h2 style="margin-top:4px"></h2>`;
    box.querySelector("h2").textContent = `${r.id} · ${r.gt_name || r.gt}`;
    S.runs.forEach((run, k) => {
      const div = document.createElement("div"); div.style.marginBottom = "10px";
      const cap = document.createElement("div"); cap.className = "muted"; cap.style.fontSize = "12px"; cap.dataset.cap = k; div.appendChild(cap);
      const cv = document.createElement("canvas"); cv.width = 448; cv.height = 448; cv.dataset.detail = k; div.appendChild(cv);
      box.appendChild(div);
    });
  }
  for (let k = 0; k < S.runs.length; k++) {
    const rk = r.runs[k]; const cv = box.querySelector(`canvas[data-detail='${k}']`); const cap = box.querySelector(`[data-cap='${k}']`);
    if (!rk || !cv) continue;
    cap.textContent = hasBoxes() ? `${"AB"[k]}: ${S.runs[k].label} — IoU @τ* ${fmt(rk.iou)}, @cursor ${fmt(liveIou(r, k))}, CVPR16 ${fmt(rk.gt_known_iou)}`
      : `${"AB"[k]}: ${S.runs[k].label} — PxAP ${fmt(rk.pxap, 1)}; red: boxes of the map at the cursor`;
    try { paint(cv, await dataFor(k, rk.i), rk); } catch (e) { cap.textContent += ` (${e.message})`; }
  }
}

function drawCurve() {
  const svg = $("curve"), W = 400, H = 220, L = 36, R = 8, T = 10, B = 26;
  const x = (t) => L + t * (W - L - R), y = (v) => T + (1 - v / 100) * (H - T - B);
  let s = `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="#fafbfc" stroke="#e3e6ec"/>`;
  for (const v of [0, 25, 50, 75, 100]) s += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eef0f3"/><text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end" fill="#667085">${v}</text>`;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) s += `<text x="${x(t)}" y="${H - 8}" font-size="10" text-anchor="middle" fill="#667085">${t}</text>`;
  S.runs.forEach((run, k) => {
    if (!hasBoxes()) return;
    const c = run.curves.v1["50"]; const pts = c.map((v, j) => `${x(run.taus[j]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    s += `<polyline points="${pts}" fill="none" stroke="${COLORS[k]}" stroke-width="2"/>`;
    const b = run.best_tau_index; s += `<circle cx="${x(run.taus[b])}" cy="${y(c[b])}" r="3.5" fill="${COLORS[k]}"/>`;
  });
  const t = S.runs[0].taus[tauIdx()] ?? 0;
  s += `<line id="cursor" x1="${x(t)}" x2="${x(t)}" y1="${T}" y2="${H - B}" stroke="#f43f5e" stroke-width="1.5"/>`;
  const vals = !hasBoxes() ? "" : S.runs.map((run, k) => `${"AB"[k]} ${fmt(run.curves.v1["50"][Math.min(tauIdx(), run.taus.length - 1)], 1)}%`).join("  ");
  if (!hasBoxes()) s += `<text id="no-boxes" x="${(L + W - R) / 2}" y="${(T + H - B) / 2}" font-size="12" text-anchor="middle" fill="#667085">masks only: no ground-truth boxes, no BoxAcc curve</text>`;
  s += `<text x="${W - R - 4}" y="${T + 14}" font-size="11" text-anchor="end" fill="#1d2330">τ=${t.toFixed(2)}  ${vals}</text>`;
  svg.innerHTML = s;
  $("tau-value").textContent = t.toFixed(2);
  svg.onpointerdown = svg.onpointermove = (e) => {
    if (e.type === "pointermove" && e.buttons !== 1) return;
    const rc = svg.getBoundingClientRect(); const tt = ((e.clientX - rc.left) / rc.width * W - L) / (W - L - R);
    const j = Math.round(Math.max(0, Math.min(1, tt)) * (S.runs[0].taus.length)); setTau(Math.min(j, S.runs[0].taus.length - 1));
  };
}
function setTau(j) { $("tau").value = j; drawCurve(); redrawAll(); }

function runCards() {
  const box = $("runs"); box.innerHTML = "";
  S.runs.forEach((run, k) => {
    const n = run.numbers, d = document.createElement("div"); d.className = "runcard"; d.style.background = "#1f2937"; d.style.borderColor = "#374151";
    d.innerHTML = `<div><span class="swatch" style="background:${COLORS[k]}"></span><b></b></div><div class="nums"></div>`;
    d.querySelector("b").textContent = `${S.runs.length > 1 ? "AB"[k] + ": " : ""}${run.label}`;
    const nums = [["MaxBoxAcc", n.maxboxacc], ["V2", n.maxboxacc_v2], ["GT-known", n.gt_known_loc], ["top-1 loc", n.top1_loc], ["top-1 cls", n.top1_cls], ["PxAP", n.pxap], ["images", n.n_images], ["τ*", run.has_boxes === false ? null : run.taus[run.best_tau_index]]];
    for (const [lab, v] of nums) if (v !== null && v !== undefined) { const sp = document.createElement("span"); sp.innerHTML = `${lab} <b>${typeof v === "number" && lab !== "images" ? v.toFixed(lab === "τ*" ? 2 : 1) : v}</b>`; d.querySelector(".nums").appendChild(sp); }
    box.appendChild(d);
  });
}

async function init() {
  try {
    S.runs = (await api("/api/runs")).runs;
    S.rows = (await api("/api/rows")).rows;
    $("tau").max = S.runs[0].taus.length - 1;
    $("tau").value = S.runs[0].start_tau_index ?? S.runs[0].best_tau_index;
    if (!hasBoxes()) for (const e of [$("filter-correct"), ...document.querySelectorAll("[data-boxes]")]) e.hidden = true;
    if (S.runs.length > 1) S.sort = { key: "disagreement", dir: -1 };  // where the runs disagree most, first
    runCards(); drawCurve(); render();
  } catch (e) { showError(e.message); }
  document.body.dataset.state = "ready";
}
$("tau").addEventListener("input", () => { drawCurve(); redrawAll(); });
for (const id of ["filter", "filter-correct"]) $(id).addEventListener("input", render);
$("v2").addEventListener("change", redrawAll);
$("opacity").addEventListener("input", redrawAll);
$("more").addEventListener("click", () => { S.page += 400; render(); });
init();
