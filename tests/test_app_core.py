"""camkit.app without a browser: safe paths, boxes at every slider threshold, the serve session's
bad-upload messages and downloads, the HTTP server's refusals, and the run-folder readers."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fixtures import odd_images as odd
from PIL import Image

from camkit.app.safe_paths import OutsideFolderError, resolve_inside
from camkit.app.tau_boxes import TAUS, cvpr16_boxes_over_taus, wsol_boxes_over_taus, wsol_empty_over_taus
from camkit.errors import ImageError
from camkit.localize import cvpr16_box, normalize_scoremap, wsol_boxes_per_threshold

pytest.importorskip("starlette", reason="the app extra (starlette, uvicorn, python-multipart) is not installed")


# ------------------------------------------------------------------ safe paths
@pytest.fixture()
def served(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(odd.chelsea()).save(root / "sub" / "cat.png")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link_out.txt")
    os.symlink(root / "sub" / "cat.png", root / "link_in.png")
    return root


def test_inside_paths_resolve(served: Path) -> None:
    assert resolve_inside(served, "sub/cat.png") == (served / "sub" / "cat.png").resolve()
    assert resolve_inside(served, "link_in.png") == (served / "sub" / "cat.png").resolve()
    assert resolve_inside(served, "sub/./cat.png") == (served / "sub" / "cat.png").resolve()


@pytest.mark.parametrize("bad", ["../secret.txt", "sub/../../secret.txt", "..", "/etc/passwd", "C:\\Windows\\win.ini",
                                 "sub\\..\\..\\secret.txt", "link_out.txt", "sub/cat.png\x00.txt", ""])
def test_paths_outside_are_refused(served: Path, bad: str) -> None:
    with pytest.raises(OutsideFolderError):
        resolve_inside(served, bad)


# ------------------------------------------------------------------ boxes at every threshold
def _toy_map() -> np.ndarray:
    y, x = np.mgrid[0:60, 0:80]
    m = np.exp(-((x - 25) ** 2 + (y - 20) ** 2) / 120.0) + 0.7 * np.exp(-((x - 60) ** 2 + (y - 45) ** 2) / 60.0)
    return (m - 0.1).astype(np.float32)  # some negative values: ReLU matters for CVPR16


def test_cvpr16_over_taus_equals_per_tau_rule() -> None:
    cam = _toy_map()
    window = (5, 3, 74, 57)
    got = cvpr16_boxes_over_taus(cam, window)
    assert got.shape == (101, 4)
    x0, y0, x1, y1 = window
    for i, tau in enumerate(TAUS.tolist()):
        want = cvpr16_box(cam[y0 : y1 + 1, x0 : x1 + 1], tau) + np.array([x0, y0, x0, y0])
        assert got[i].tolist() == want.tolist(), tau


def test_wsol_over_taus_equals_reference_loop() -> None:
    cam = _toy_map()
    for multi in (False, True):
        got = wsol_boxes_over_taus(cam, None, multi)
        want = wsol_boxes_per_threshold(normalize_scoremap(cam), TAUS, multi)
        assert [g.tolist() for g in got] == [np.asarray(w).tolist() for w in want]
    empty = wsol_empty_over_taus(cam)
    assert empty[-1] is True and not any(empty[:-1])  # only tau = 1 keeps no pixel


def test_taus_are_the_literals() -> None:
    # the page sends "0.35"; TAUS[35] must be that float so boxes equal `camkit explain --tau 0.35`
    assert all(TAUS[i] == float(f"{i / 100:.2f}") for i in range(101))


# ------------------------------------------------------------------ serve session
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from camkit.app.serve_session import ServeSession

    folder = tmp_path_factory.mktemp("served")
    Image.fromarray(odd.chelsea()).save(folder / "chelsea.png")
    s = ServeSession(folder=folder)
    yield s
    s.close()


def _cli_message(path: Path) -> str:
    from camkit.io import load_image

    with pytest.raises(ImageError) as e:
        load_image(path)
    return str(e.value)


@pytest.mark.parametrize("writer", [odd.write_text_as_jpeg, odd.write_truncated_png, odd.write_truncated_jpeg,
                                    odd.write_huge_header_png, odd.write_empty_jpeg])
def test_bad_uploads_give_the_cli_message(session, tmp_path: Path, writer, monkeypatch) -> None:
    path = writer(tmp_path)
    monkeypatch.chdir(tmp_path)  # the CLI names the file as the user typed it: relative here
    want = _cli_message(Path(path.name))
    with pytest.raises(ImageError) as e:
        session.add_upload(path.name, path.read_bytes())
    assert str(e.value) == want
    assert "\n" not in str(e.value)


def test_session_explains_and_downloads_what_explain_out_writes(session, tmp_path: Path) -> None:
    import camkit
    from camkit.explanation import explain_batch
    from camkit.io import load_image

    png = tmp_path / "cat.png"
    Image.fromarray(odd.chelsea()).save(png)
    photo = session.add_upload("cat.png", png.read_bytes())
    r = session.explain(photo.photo_id, topk=3)
    view = session.class_view(r.result_id, 1)
    m = session.model()
    # the same call `camkit explain --tau 0.35 --out` makes
    exp = explain_batch(m, [load_image(png)], [str(png)], 3, "crop", "bicubic", 0.35, None, None)[0]
    assert view["class_index"] == int(exp.class_indices[1])
    assert view["cvpr16"][35] == exp.boxes[1].tolist()
    data, name, mime = session.download(r.result_id, "json", 0.35)
    doc = json.loads(data)
    assert name == "cat.json" and mime == "application/json"
    assert [p["box"] for p in doc["images"][0]["predictions"]] == exp.boxes.tolist()
    npy, _, _ = session.download(r.result_id, "npy", 0.35)
    (tmp_path / "m.npy").write_bytes(npy)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), exp.maps)
    assert camkit.load_model is not None


# ------------------------------------------------------------------ the HTTP server
@pytest.fixture(scope="module")
def server(session):
    import uvicorn

    from camkit.app.http_common import free_port
    from camkit.app.serve_app import create_serve_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_serve_app(session), host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start in 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def _post_json(url: str, doc: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_refuses_paths_outside_the_folder(server, session) -> None:
    outside = session.folder.parent / "outside.png"
    Image.fromarray(odd.chelsea()).save(outside)
    os.symlink(outside, session.folder / "escape.png")
    for bad in ["../outside.png", str(outside), "escape.png", "%2e%2e/outside.png"]:
        code, doc = _post_json(server + "/api/open", {"path": bad})
        assert code in (400, 403), bad
        assert "error" in doc and "\n" not in doc["error"]
    code, doc = _post_json(server + "/api/open", {"path": "chelsea.png"})
    assert code == 200 and doc["width"] == 451
    with urllib.request.urlopen(server + "/api/folder", timeout=30) as r:
        assert json.loads(r.read())["images"] == ["chelsea.png"]  # the symlink out is not listed
    # static files cannot climb out either
    for bad in ["/static/../serve_session.py", "/static/%2e%2e/serve_session.py"]:
        try:
            with urllib.request.urlopen(server + bad, timeout=30) as r:
                assert b"ServeSession" not in r.read()
        except urllib.error.HTTPError as e:
            assert e.code == 404


def test_http_bad_upload_then_good_one(server, tmp_path: Path) -> None:
    def upload(name: str, data: bytes) -> tuple[int, dict]:
        boundary = "camkitboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(server + "/api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    code, doc = upload("notes.txt", b"just some text\n")
    assert code == 400 and doc["error"].startswith("notes.txt: ") and "\n" not in doc["error"]
    png = tmp_path / "c.png"
    Image.fromarray(odd.chelsea()).save(png)
    code, doc = upload("c.png", png.read_bytes())
    assert code == 200 and (doc["width"], doc["height"]) == (451, 300)
