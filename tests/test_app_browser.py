"""The pages in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

``camkit serve`` and ``camkit view`` run as real subprocesses on 127.0.0.1 (a free port) in their own
process group, stopped in the fixture's teardown; every wait is bounded. Screenshots go to
``$CAMKIT_SHOTS`` (default /tmp/camkit-shots).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures import odd_images as odd
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("CAMKIT_SHOTS", "/tmp/camkit-shots"))
WAIT_MS = 120_000


def _missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "playwright"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return "chromium"
    for m in ("starlette", "uvicorn", "multipart"):
        if importlib.util.find_spec(m) is None:
            return m
    return None


_MISSING = _missing()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_MISSING is not None, reason=f"browser tests need chromium (apt-get install chromium), playwright and "
                       f"the app extra; missing: {_MISSING}"),
]


def _start(args: list[str], tmp: Path) -> tuple[subprocess.Popen, str]:
    from camkit.app.http_common import free_port

    port = free_port()
    log = open(tmp / f"server-{port}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "camkit", *args, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited: {log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError("server did not answer within 180 s")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 960})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    ctx.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(odd.chelsea()).save(d / "chelsea.png")
    (d / "notes.txt").write_text("not an image\n")
    odd.write_truncated_png(d)
    return d


@pytest.fixture(scope="module")
def serve_url(photos, tmp_path_factory):
    proc, url = _start(["serve", "--folder", str(photos)], tmp_path_factory.mktemp("serve"))
    yield url
    _stop(proc)


def _cli_json(photo: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "camkit", "explain", str(photo), "--json", *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["images"][0]["predictions"]


def _set_tau(page, tau: float) -> None:
    page.eval_on_selector("#tau", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(round(tau * 100)))


def _shown(page) -> tuple[str, float, list[int]]:
    box = [int(v) for v in page.inner_text("#sel-box").split(",")]
    return page.inner_text("#sel-label"), float(page.inner_text("#sel-score")), box


def test_serve_upload_class_and_threshold_match_explain(page, serve_url, photos) -> None:
    page.goto(serve_url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.set_input_files("#file-input", str(photos / "chelsea.png"))
    page.wait_for_function("document.body.dataset.result && document.body.dataset.state === 'ready'")
    top = _cli_json(photos / "chelsea.png", "--topk", "5")
    rows = page.locator("#topk-table tbody tr")
    assert rows.count() == 5
    assert [rows.nth(i).locator(".label").inner_text() for i in range(5)] == [p["label"] for p in top]
    label, score, box = _shown(page)
    assert (label, score, box) == (top[0]["label"], top[0]["score"], top[0]["box"])  # tau 0.2, the CLI default

    # another class by name (the search field), and a new threshold: the CLI with the same settings
    page.fill("#class-search", "tabby, Egyptian cat")
    page.click("#explain-btn")
    page.wait_for_function("document.querySelectorAll('#topk-table tbody tr').length === 2 && document.body.dataset.state === 'ready'")
    page.locator("#topk-table tbody tr").nth(1).click()
    page.wait_for_function("document.getElementById('sel-label').textContent === 'Egyptian cat' && document.body.dataset.state === 'ready'")
    _set_tau(page, 0.55)
    want = _cli_json(photos / "chelsea.png", "--class", "tabby", "--class", "Egyptian cat", "--tau", "0.55")[1]
    assert page.inner_text("#tau-value") == "0.55"
    assert _shown(page) == (want["label"], want["score"], want["box"])
    page.screenshot(path=str(SHOTS / "serve_class_tau.png"), full_page=True)

    # the slider redraws locally: no request per move
    n_requests = []
    page.on("request", lambda r: n_requests.append(r.url))
    for t in (0.1, 0.3, 0.7, 0.9):
        _set_tau(page, t)
    assert not [u for u in n_requests if "/api/" in u]

    # the download is what `camkit explain --tau 0.55 --out` writes
    _set_tau(page, 0.55)
    with page.expect_download() as dl:
        page.click("#dl-json")
    doc = json.loads(Path(dl.value.path()).read_text())
    assert [p["box"] for p in doc["images"][0]["predictions"]][1] == want["box"]


def test_serve_bad_uploads_show_one_line_and_keep_serving(page, serve_url, photos) -> None:
    from camkit.io import load_image

    page.goto(serve_url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    for name in ("notes.txt", "truncated.png"):
        page.set_input_files("#file-input", str(photos / name))
        page.wait_for_function("document.getElementById('error').textContent.length > 0 && document.body.dataset.state === 'ready'")
        shown = page.inner_text("#error")
        cwd = os.getcwd()
        os.chdir(photos)
        try:
            with pytest.raises(Exception) as e:
                load_image(name)
        finally:
            os.chdir(cwd)
        assert shown == str(e.value)
        page.screenshot(path=str(SHOTS / f"serve_bad_{name}.png"))
    # the server still answers, and a folder image opens
    page.locator("#folder-list li", has_text="chelsea.png").click()
    page.wait_for_function("document.body.dataset.result && document.body.dataset.state === 'ready'")
    assert page.inner_text("#error") == ""
    assert page.locator("#topk-table tbody tr").count() == 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from test_app_rundir import sample_run_dir

    return sample_run_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def view_url(run_dir, tmp_path_factory):
    proc, url = _start(["view", str(run_dir)], tmp_path_factory.mktemp("view"))
    yield url
    _stop(proc)


def test_view_table_sorts_worst_first_and_cursor_moves_boxes(page, view_url, run_dir) -> None:
    from camkit.app.rundir import image_rows, read_run_dir

    rows = image_rows(read_run_dir(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    best = round(summary["best_tau"]["v1"]["50"] / summary["protocol"]["tau_step"])
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    worst = min(records, key=lambda r: (r["v1"][best], r["i"]))

    page.goto(view_url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert page.locator("#images tbody tr").count() == len(rows) == 12
    page.click("#images th[data-key='iou']")  # ascending: the worst first
    first = page.locator("#images tbody tr").first
    assert first.get_attribute("data-id") == worst["id"]
    assert float(first.locator("td.iou").inner_text()) == pytest.approx(worst["v1"][best], abs=5e-4)
    page.wait_for_function("document.querySelectorAll('canvas.thumb[data-drawn=\"1\"]').length >= 6")
    # the cursor moves every image's live IoU to that tau's column of the records
    page.eval_on_selector("#tau", "e => { e.value = 60; e.dispatchEvent(new Event('input')); }")
    assert float(first.locator("td.live").inner_text()) == pytest.approx(worst["v1"][60], abs=5e-4)
    first.click()
    page.wait_for_function("document.querySelector('#detail canvas') !== null")
    time.sleep(0.5)
    page.screenshot(path=str(SHOTS / "view_sorted.png"))


def test_report_html_renders_every_image(page, run_dir, tmp_path) -> None:
    from camkit.app.report_html import write_report_html

    out = write_report_html(run_dir, tmp_path / "report.html")
    page.goto(out.as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    widths = page.eval_on_selector_all("img.t", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 12 and all(w == 160 for w in widths)
    assert page.locator("#imgs tbody tr").count() == 12
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)


@pytest.fixture(scope="module")
def mask_run_url(tmp_path_factory, lite0):
    """`camkit view` of a masks-only run (OpenImages layout, PxAP): no boxes to show IoUs or a curve for."""
    from test_evaluate_pxap import make_openimages

    from camkit.datasets import read_layout
    from camkit.evaluate import evaluate

    root, mask_root, meta = make_openimages(tmp_path_factory.mktemp("oi"))
    out = tmp_path_factory.mktemp("mask_run")
    evaluate(read_layout("wsol", root, meta, None, mask_root), lite0, batch_size=4, out_dir=out, progress=False)
    proc, url = _start(["view", str(out)], tmp_path_factory.mktemp("view_masks"))
    yield url
    _stop(proc)


def test_view_of_a_masks_only_run_shows_pxap_and_no_box_columns(page, mask_run_url) -> None:
    page.goto(mask_run_url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert page.locator("#images tbody tr").count() == 4
    keys = page.eval_on_selector_all("#head th", "els => els.map(e => e.dataset.key)")
    assert "pxap" in keys and not {"iou", "live", "correct", "gt_known_iou"} & set(keys)
    assert page.locator("#no-boxes").count() == 1 and page.locator("#filter-correct").is_hidden()
    assert page.locator("[data-boxes]").count() == 2 and page.locator("[data-boxes]").first.is_hidden()
    assert page.input_value("#tau") == "20"  # CVPR16's tau 0.2, not a best tau of an all-zero curve
    assert "τ*" not in page.inner_text("#runs")
    page.wait_for_function("document.querySelectorAll('canvas.thumb[data-drawn=\"1\"]').length >= 4")
    page.locator("#images tbody tr").first.click()
    page.wait_for_function("document.querySelector('#detail canvas') !== null")
    assert "PxAP" in page.inner_text("#detail")
    time.sleep(0.5)
    page.screenshot(path=str(SHOTS / "view_masks.png"))
