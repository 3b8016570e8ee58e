"""``camkit serve`` speed in a real browser (headless Chromium via Playwright, Debian's /usr/bin/chromium).

Measures, on a 224x224 photo (so a 224x224 map):
- threshold slider: time from the slider's input event to the box redrawn (handler + next animation
  frame), median over many moves; no request is made per move (all thresholds arrive with the class);
- first page load: navigation to controls ready (page, script, /api/config, class list), median of 5,
  with the server already up;
- server side: one class's boxes at all 101 thresholds under both conventions (what a class costs once).

Run: .venv/bin/python bench/bench_app.py   (needs the app extra, playwright and chromium)
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    from camkit.app.http_common import free_port

    tmp = Path(tempfile.mkdtemp(prefix="camkit-bench-app-"))
    photo = tmp / "chelsea224.png"
    Image.fromarray(skimage.data.chelsea()).resize((224, 224), Image.BICUBIC).save(photo)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "camkit", "serve", "--port", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            pg = b.new_page(viewport={"width": 1440, "height": 960})
            pg.set_default_timeout(120_000)
            loads = []
            for _ in range(5):
                t0 = time.perf_counter()
                pg.goto(url)
                pg.wait_for_function("document.body.dataset.state === 'ready' && document.getElementById('class-names').options.length > 0")
                loads.append(time.perf_counter() - t0)
            pg.set_input_files("#file-input", str(photo))
            pg.wait_for_function("document.body.dataset.result && document.body.dataset.state === 'ready'")
            moves = pg.evaluate("""async () => {
                const s = document.getElementById('tau'), out = [];
                for (let k = 0; k < 200; k++) {
                    const t0 = performance.now();
                    s.value = String((k * 37) % 101); s.dispatchEvent(new Event('input'));
                    await new Promise(r => requestAnimationFrame(() => r()));
                    out.push(performance.now() - t0);
                }
                return out;
            }""")
            handler = pg.evaluate("""() => {
                const s = document.getElementById('tau'), out = [];
                for (let k = 0; k < 200; k++) {
                    const t0 = performance.now();
                    s.value = String((k * 37) % 101); s.dispatchEvent(new Event('input'));
                    out.push(performance.now() - t0);
                }
                return out;
            }""")
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    from camkit.app.serve_session import ServeSession

    s = ServeSession()
    ph = s.add_upload(photo.name, photo.read_bytes())
    r = s.explain(ph.photo_id, topk=5)
    per_class = []
    for j in range(5):
        t0 = time.perf_counter()
        s.class_view(r.result_id, j)
        per_class.append(time.perf_counter() - t0)
    s.close()

    print("camkit serve, 224x224 photo (224x224 map), headless Chromium, this 2-core CPU\n")
    print("| measure | median | p90 | n |")
    print("|---|---:|---:|---:|")
    print(f"| slider move -> box redrawn (handler + next frame) | {statistics.median(moves):.1f} ms | {np.percentile(moves, 90):.1f} ms | {len(moves)} |")
    print(f"| slider move handler alone (text, table, canvas) | {statistics.median(handler):.2f} ms | {np.percentile(handler, 90):.2f} ms | {len(handler)} |")
    print(f"| first page load (server up) to controls ready | {statistics.median(loads) * 1000:.0f} ms | {max(loads) * 1000:.0f} ms (max) | {len(loads)} |")
    print(f"| server: one class's boxes at 101 taus, both conventions | {statistics.median(per_class) * 1000:.0f} ms | {max(per_class) * 1000:.0f} ms (max) | {len(per_class)} |")


if __name__ == "__main__":
    main()
