// camkit serve: the page. Boxes for every threshold arrive with each class, so the threshold slider
// only redraws (no request); the heat layer is a PNG whose opacity is a CSS property.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { config: null, photo: null, result: null, views: {}, j: 0, busy: 0 };

function showError(msg) { const e = $("error"); e.textContent = msg; e.classList.add("show"); }
function clearError() { const e = $("error"); e.textContent = ""; e.classList.remove("show"); }
function busy(delta) {
  state.busy += delta;
  document.body.dataset.state = state.busy > 0 ? "busy" : "ready";
}

async function api(url, opts) {
  const r = await fetch(url, opts);
  let doc = null;
  try { doc = await r.json(); } catch (_) { doc = { error: `HTTP ${r.status} (not JSON)` }; }
  if (!r.ok || doc.error) throw new Error(doc.error || `HTTP ${r.status}`);
  return doc;
}

async function withBusy(fn) {
  busy(+1);
  try { return await fn(); } catch (e) { showError(e.message); return null; } finally { busy(-1); }
}

function tau() { return Number($("tau").value) / 100; }
function tauIndex() { return Number($("tau").value); }
function convention() { return $("conv-wsol").checked ? "wsol" : "cvpr16"; }

function boxesAt(view, i) {
  // -> list of boxes [x0, y0, x1, y1] for the current rule at threshold index i ([] when nothing is kept)
  if (convention() === "cvpr16") return [view.cvpr16[i]];
  if (view.wsol_empty[i]) return [];
  return $("multi").checked ? view.wsol_v2[i] : view.wsol_v1[i];
}
function fmtBox(b) { return b ? b.join(", ") : "none"; }
function fmtBoxes(list) { return list.length ? list.map(fmtBox).join(" | ") : "none (no pixel above τ)"; }

function drawBoxes() {
  const c = $("boxes"), img = $("photo");
  const view = state.views[state.j];
  const w = img.clientWidth, h = img.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!view || !img.naturalWidth) return;
  const s = (w * dpr) / img.naturalWidth;
  const list = boxesAt(view, tauIndex());
  ctx.lineWidth = Math.max(2, 2.5 * dpr);
  list.forEach((b, k) => {
    ctx.strokeStyle = k === 0 ? "#f43f5e" : "#f59e0b";
    ctx.strokeRect(b[0] * s, b[1] * s, (b[2] - b[0] + 1) * s, (b[3] - b[1] + 1) * s);
  });
  const lab = `${view.label}`;
  ctx.font = `${13 * dpr}px system-ui, sans-serif`;
  if (list.length) {
    const b = list[0], tw = ctx.measureText(lab).width + 8 * dpr;
    const y = Math.max(0, b[1] * s - 18 * dpr);
    ctx.fillStyle = "rgba(244,63,94,.9)"; ctx.fillRect(b[0] * s, y, tw, 18 * dpr);
    ctx.fillStyle = "#fff"; ctx.fillText(lab, b[0] * s + 4 * dpr, y + 13 * dpr);
  }
}

function updateText() {
  const view = state.views[state.j];
  $("tau-value").textContent = tau().toFixed(2);
  $("stage").dataset.tau = tau().toFixed(2);
  if (!view) return;
  const list = boxesAt(view, tauIndex());
  $("sel-label").textContent = view.label;
  $("sel-score").textContent = view.score.toFixed(6);
  $("sel-box").textContent = convention() === "cvpr16" ? fmtBox(list[0]) : fmtBoxes(list);
  $("sel-extra").textContent = `class ${view.class_index} · logit ${view.logit.toFixed(3)}`;
  const wsol = convention() === "wsol";
  $("cbar-min").textContent = (wsol ? view.map_min : 0).toPrecision(4);
  $("cbar-max").textContent = view.map_max.toPrecision(4);
  $("cbar-note").textContent = wsol
    ? `colour = (map − min) / (max − min); raw map range ${view.map_min.toPrecision(4)} … ${view.map_max.toPrecision(4)} (logit units)`
    : `colour = max(map, 0) / max; raw map range ${view.map_min.toPrecision(4)} … ${view.map_max.toPrecision(4)} (logit units)`;
  // the table's box column follows the slider too
  document.querySelectorAll("#topk-table tbody tr").forEach((tr) => {
    const v = state.views[Number(tr.dataset.j)];
    const cell = tr.querySelector(".boxcell");
    if (v) { const l = boxesAt(v, tauIndex()); cell.textContent = convention() === "cvpr16" ? fmtBox(l[0]) : (l.length ? fmtBox(l[0]) + (l.length > 1 ? ` +${l.length - 1}` : "") : "none"); }
  });
  const rid = state.result && state.result.result_id;
  if (rid) for (const k of ["json", "png", "npy"]) $("dl-" + k).href = `/api/result/${rid}/download/${k}?tau=${tau().toFixed(2)}`;
}

function redraw() { updateText(); drawBoxes(); }

function fitStage() {
  // scale the photo (up or down) to the panel's width and at most 72% of the window's height
  const img = $("photo");
  if (!img.naturalWidth) return;
  const avail = $("view-panel").clientWidth - 26;
  const maxH = window.innerHeight * 0.72;
  const w = Math.max(64, Math.min(avail, img.naturalWidth * (maxH / img.naturalHeight)));
  img.style.width = `${Math.floor(w)}px`;
  drawBoxes();
}

function setHeat() {
  const view = state.views[state.j];
  if (!view || !state.result) return;
  const norm = convention() === "wsol" ? "minmax" : "relu_max";
  $("heat").src = `/api/result/${state.result.result_id}/heat/${state.j}/${norm}.png`;
  $("heat").style.opacity = Number($("opacity").value) / 100;
}

async function loadView(j) {
  if (!state.views[j]) state.views[j] = await api(`/api/result/${state.result.result_id}/class/${j}`);
  return state.views[j];
}

async function selectClass(j) {
  state.j = j;
  document.querySelectorAll("#topk-table tbody tr").forEach((tr) => tr.classList.toggle("selected", Number(tr.dataset.j) === j));
  await withBusy(async () => { await loadView(j); setHeat(); redraw(); });
}

function fillTable(doc) {
  const tb = $("topk-table").querySelector("tbody");
  tb.innerHTML = "";
  doc.predictions.forEach((p, j) => {
    const tr = document.createElement("tr");
    tr.dataset.j = j;
    tr.innerHTML = `<td class="num">${j + 1}</td><td class="num mono">${p.class_index}</td>` +
      `<td class="label"></td><td class="num mono score">${p.score.toFixed(4)}<div class="scorebar"><div style="width:${(100 * p.score).toFixed(1)}%"></div></div></td>` +
      `<td class="mono boxcell">…</td>`;
    tr.querySelector(".label").textContent = p.label;
    tr.addEventListener("click", () => selectClass(j));
    tb.appendChild(tr);
  });
  $("run-info").textContent = `${doc.model} · ${doc.method} · ${doc.resize_mode} · ${doc.name} (${doc.width}×${doc.height})`;
}

async function explain() {
  if (!state.photo) return;
  clearError();
  const classes = $("class-search").value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = {
    photo_id: state.photo.photo_id, model: $("model").value, method: $("method").value || null,
    topk: Number($("topk").value) || 5, classes, resize_mode: $("resize-mode").value,
  };
  const doc = await withBusy(() => api("/api/explain", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }));
  if (!doc) return;
  state.result = doc; state.views = { 0: doc.first_class }; state.j = 0;
  fillTable(doc);
  $("empty").hidden = true; $("viewer").hidden = false;
  const photoUrl = `/api/photo/${doc.photo_id}`;
  if ($("photo").getAttribute("src") !== photoUrl) {
    await new Promise((res) => { $("photo").onload = res; $("photo").onerror = res; $("photo").src = photoUrl; });
  }
  setHeat();
  document.querySelectorAll("#topk-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.j === "0"));
  redraw();
  document.body.dataset.result = doc.result_id;
  // the other classes' boxes in the background, so the table's box column fills in
  for (let j = 1; j < doc.predictions.length; j++) {
    const rid = doc.result_id;
    loadView(j).then(() => { if (state.result && state.result.result_id === rid) updateText(); }).catch(() => {});
  }
}

async function usePhoto(doc) {
  if (!doc) return;
  state.photo = doc;
  $("explain-btn").disabled = false;
  await explain();
}

async function upload(file) {
  clearError();
  if (file.size > state.config.max_upload_bytes) {
    showError(`${file.name}: file too large (${(file.size / 2 ** 20).toFixed(0)} MiB, limit ${state.config.max_upload_bytes / 2 ** 20} MiB); downscale or re-export the image`);
    return;
  }
  const fd = new FormData(); fd.append("file", file, file.name);
  await usePhoto(await withBusy(() => api("/api/upload", { method: "POST", body: fd })));
}

async function openPath(rel, li) {
  clearError();
  document.querySelectorAll("#folder-list li").forEach((x) => x.classList.toggle("active", x === li));
  await usePhoto(await withBusy(() => api("/api/open", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ path: rel }) })));
}

async function loadClassNames() {
  const doc = await withBusy(() => api(`/api/classes?model=${encodeURIComponent($("model").value)}`));
  const dl = $("class-names"); dl.innerHTML = "";
  if (!doc) return;
  const frag = document.createDocumentFragment();
  doc.classes.forEach((n, i) => { const o = document.createElement("option"); o.value = n; o.label = `${i}`; frag.appendChild(o); });
  dl.appendChild(frag);
}

async function init() {
  busy(+1);
  try {
    const cfg = await api("/api/config");
    state.config = cfg;
    for (const m of cfg.models) { const o = new Option(`${m.name} (${m.cam_kind})`, m.name); $("model").add(o); }
    $("model").value = cfg.default_model;
    $("method").add(new Option("default", ""));
    for (const m of cfg.methods) $("method").add(new Option(m, m));
    if (cfg.folder) {
      $("folder-box").hidden = false; $("folder-name").textContent = cfg.folder;
      const doc = await api("/api/folder");
      for (const rel of doc.images) {
        const li = document.createElement("li"); li.textContent = rel; li.title = rel;
        li.addEventListener("click", () => openPath(rel, li));
        $("folder-list").appendChild(li);
      }
    }
  } catch (e) { showError(e.message); } finally { busy(-1); }
  loadClassNames();
}

$("drop").addEventListener("click", () => $("file-input").click());
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file-input").click(); });
$("file-input").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); e.target.value = ""; });
for (const ev of ["dragenter", "dragover"]) $("drop").addEventListener(ev, (e) => { e.preventDefault(); $("drop").classList.add("over"); });
for (const ev of ["dragleave", "drop"]) $("drop").addEventListener(ev, (e) => { e.preventDefault(); $("drop").classList.remove("over"); });
$("drop").addEventListener("drop", (e) => { if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]); });
$("tau").addEventListener("input", redraw);
$("opacity").addEventListener("input", () => {
  $("heat").style.opacity = Number($("opacity").value) / 100;
  $("opacity-value").textContent = (Number($("opacity").value) / 100).toFixed(2);
});
for (const id of ["conv-cvpr16", "conv-wsol"]) $(id).addEventListener("change", () => { setHeat(); redraw(); });
$("multi").addEventListener("change", redraw);
$("explain-btn").addEventListener("click", explain);
$("class-search").addEventListener("keydown", (e) => { if (e.key === "Enter") explain(); });
$("model").addEventListener("change", () => { loadClassNames(); if (state.photo) explain(); });
for (const id of ["method", "resize-mode"]) $(id).addEventListener("change", () => { if (state.photo) explain(); });
window.addEventListener("resize", fitStage);
$("photo").addEventListener("load", fitStage);
init();
