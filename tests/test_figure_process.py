"""The figure process (camkit.evaluate.figure_process): figures drawn there are byte-identical to figures drawn
here; whatever goes wrong there (an error, a crash, a hang, no interpreter) ends with the figures drawn here,
in bounded time; it ends when its stdin closes; it never imports torch; `camkit evaluate`'s outputs use it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from camkit.evaluate import figure_process
from camkit.evaluate.figure_process import FigureDrawer, FigureProcess

ROOT = Path(__file__).resolve().parents[1]


def _summary() -> dict:
    """The fields plot_curves reads, with curves a run could have (BoxAcc in percent over 100 taus)."""
    taus = np.arange(0, 1, 0.01)
    bump = lambda c, w: np.round(100 * np.exp(-((taus - c) / w) ** 2), 3).tolist()  # noqa: E731
    curves = {"taus": taus.tolist(), "v1": {"50": bump(0.3, 0.3)},
              "v2": {"30": bump(0.4, 0.4), "50": bump(0.3, 0.3), "70": bump(0.2, 0.2)}}
    best = {v: {k: float(taus[int(np.argmax(c))]) for k, c in curves[v].items()} for v in ("v1", "v2")}
    return {"curves": curves, "best_tau": best, "n_images": 12, "model": {"name": "efficientnet_lite0"},
            "protocol": {"input_size": 224}}


def _panels(n: int = 4) -> list[dict]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224, 0:224]
    return [{"image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
             "cam": np.exp(-((xx - 40 * k - 60) ** 2 + (yy - 100) ** 2) / 2000.0).astype(np.float32),
             "gt_boxes": [[20 + k, 30, 150, 200]], "pred_box": [40, 50 + k, 120, 180], "title": f"image {k}\nIoU 0.{k}"}
            for k in range(n)]


def _draw_all(drawer: FigureDrawer, folder: Path) -> None:
    drawer.draw("plot_curves", _summary(), folder / "curves.png")
    drawer.draw("plot_gallery", _panels(), folder / "gallery.png", "best 4")
    drawer.finish()


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def drawn_here(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("here")
    _draw_all(FigureDrawer(None), folder)
    return _bytes(folder)


def test_the_process_draws_the_same_bytes_and_ends(tmp_path, drawn_here):
    process = FigureProcess.start()
    assert process is not None
    drawn = [process.submit("plot_curves", (_summary(), tmp_path / "curves.png")),
             process.submit("plot_gallery", (_panels(), tmp_path / "gallery.png", "best 4"))]
    assert process.finish(timeout=60) == [None, None]  # both drawn over there
    assert [f.result(timeout=0) for f in drawn] == [None, None]
    assert _bytes(tmp_path) == drawn_here and set(drawn_here) == {"curves.png", "gallery.png"}
    assert process._popen.wait(timeout=30) is not None  # ends by itself once its stdin is closed


def test_an_error_over_there_is_raised_here(tmp_path):
    process = FigureProcess.start()
    assert process is not None
    drawer = FigureDrawer(process)
    drawer.draw("plot_curves", _summary(), tmp_path / "no such folder" / "curves.png")
    with pytest.raises(FileNotFoundError):  # the process failed, the figure is drawn here and fails the same way
        drawer.finish()


def test_the_process_refuses_names_outside_the_figures(tmp_path):
    process = FigureProcess.start()
    assert process is not None
    refused = process.submit("preload_everything", ())
    assert process.finish(timeout=60) == ["ValueError: unknown figure 'preload_everything'"]
    with pytest.raises(figure_process.FigureProcessError, match="unknown figure"):
        refused.result(timeout=0)
    late = process.submit("plot_curves", (_summary(), tmp_path / "late.png"))  # after the process ended
    with pytest.raises(figure_process.FigureProcessError, match="ended"):
        late.result(timeout=30)
    with pytest.raises(ValueError, match="unknown figure"):
        FigureDrawer(None).draw("savefig", tmp_path / "x.png")


@pytest.mark.parametrize("command", [
    [sys.executable, "-c", "import time; time.sleep(60)"],  # never reads its stdin: a hang
    [sys.executable, "-c", "pass"],  # gone before the first figure: a crash
    [sys.executable, "-c", "import sys; sys.stdin.buffer.read(8); sys.stdout.buffer.write(b'\\x05'); sys.exit(3)"],  # garbage
])
def test_figures_are_drawn_here_when_the_process_fails(tmp_path, drawn_here, command):
    process = FigureProcess.start(command)
    assert process is not None
    drawer = FigureDrawer(process, timeout=2.0)
    t = time.perf_counter()
    _draw_all(drawer, tmp_path)
    assert time.perf_counter() - t < 30  # the hang cost at most the timeout (and the drawing)
    assert _bytes(tmp_path) == drawn_here
    assert process._popen.wait(timeout=30) is not None  # killed or ended, not left behind


def test_no_interpreter_means_drawing_here(tmp_path, drawn_here):
    assert FigureProcess.start(["/nonexistent/python3"]) is None
    _draw_all(FigureDrawer(None), tmp_path)
    assert _bytes(tmp_path) == drawn_here


def test_the_worker_never_imports_torch():
    code = ("import sys; import camkit.evaluate.figure_worker, camkit.evaluate.plots as p; p.preload(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unused_early_process_is_stopped():
    figure_process.start_early()
    process = figure_process._early
    assert process is not None
    figure_process.discard_early()
    assert figure_process.take_early() is None and process._popen.poll() is not None


def test_evaluate_outputs_take_the_early_process(tmp_path, lite0, ilsvrc_sample):
    """A run's outputs with the early figure process (as `camkit evaluate` starts it) equal those drawn here."""
    from camkit.datasets import read_ilsvrc_xml
    from camkit.evaluate import evaluate

    ds = read_ilsvrc_xml(ilsvrc_sample / "val", ilsvrc_sample / "bbox")
    evaluate(ds, lite0, batch_size=12, out_dir=tmp_path / "here", progress=False)
    figure_process.start_early()
    figure_process.prefetch_thumbnails_early("ilsvrc", ilsvrc_sample, None, None, None, None)  # as the CLI does
    process = figure_process._early
    evaluate(ds, lite0, batch_size=12, out_dir=tmp_path / "there", progress=False)
    assert figure_process.take_early() is None  # taken by the run's outputs
    # the prefetch, the thumbnails, the curves and both galleries done there
    assert process is not None and process._answers == [None] * 5
    for name in ("boxacc_vs_tau.png", "gallery_best.png", "gallery_worst.png", "per_image.csv"):
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name
    html = (tmp_path / "there" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3  # the report waited for the figures
    thumbs = re.compile(r'<img class="t" alt="[^"]+" src="data:image/jpeg;base64,[^"]+">')
    assert thumbs.findall(html) == thumbs.findall((tmp_path / "here" / "report.html").read_text())
    assert len(thumbs.findall(html)) == 12
    files = json.loads((tmp_path / "there" / "summary.json").read_text())["run"]["files"]
    assert {"curves", "gallery_best", "gallery_worst"} <= set(files)


def test_thumbnails_made_there_equal_those_made_here(ilsvrc_sample):
    from camkit.app.thumbnails import thumbnail_uri

    paths = [str(p) for p in sorted((ilsvrc_sample / "val").glob("*.JPEG"))] + ["/nonexistent/photo.jpg"]
    process = FigureProcess.start()
    assert process is not None
    ahead = process.submit("prefetch_thumbnails", ("ilsvrc", str(ilsvrc_sample), None, None, None, 3))
    made = process.submit("thumbnails", (paths,))
    assert ahead.result(timeout=60) is None
    assert made.result(timeout=60) == {p: thumbnail_uri(Path(p)) for p in paths}  # None for the missing photo
    assert made.result()["/nonexistent/photo.jpg"] is None
    # without a prefetch first, all are made when asked
    again = process.submit("thumbnails", (paths[:2],))
    assert again.result(timeout=60) == {p: thumbnail_uri(Path(p)) for p in paths[:2]}
    assert process.finish(timeout=60) == [None, None, None]


@pytest.mark.parametrize("command", [
    [sys.executable, "-c", "import time; time.sleep(60)"],  # a hang
    [sys.executable, "-c", "pass"],  # a crash
])
def test_thumbnails_are_made_here_when_the_process_fails(ilsvrc_sample, monkeypatch, command):
    from concurrent.futures import ThreadPoolExecutor

    from camkit.app.thumbnails import thumbnail_uri
    from camkit.evaluate import outputs

    monkeypatch.setattr(figure_process, "WAIT_S", 2.0)
    photos = [(i, p) for i, p in enumerate(sorted((ilsvrc_sample / "val").glob("*.JPEG"))[:3])]
    process = FigureProcess.start(command)
    assert process is not None
    made = process.submit("thumbnails", ([str(p) for _, p in photos],))
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        got = outputs._thumbnails_made_there(made, photos, pool, process)
        assert {i: f.result(timeout=60) for i, f in got.items()} == {i: thumbnail_uri(p) for i, p in photos}
    assert time.perf_counter() - t < 30
    assert process._popen.wait(timeout=30) is not None  # killed or ended, not left behind


def test_killing_an_idle_process_ends_its_thread():
    process = FigureProcess.start()
    assert process is not None
    process.kill()
    process._thread.join(30)
    assert not process._thread.is_alive() and process._popen.poll() is not None


@pytest.mark.parametrize(("rank", "main"), [(None, True), ("0", True), ("", True), ("1", False), ("3", False)])
def test_only_the_rank_that_writes_the_outputs_starts_a_figure_process(monkeypatch, rank, main):
    from camkit.distributed import main_by_environment

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert main_by_environment() is main
