"""`camkit explain` / `camkit models` from the command line: JSON shape, outputs, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fixtures import odd_images
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.io.samples import sample_path

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_json_document_shape_and_nothing_else_on_stdout():
    r = run("explain", str(sample_path("chelsea")), "--topk", "3", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert doc["model"] == "efficientnet_lite0"
    (img,) = doc["images"]
    assert set(img) == {"path", "width", "height", "predictions"} and (img["width"], img["height"]) == (451, 300)
    assert [p["class_index"] for p in img["predictions"]] == [282, 285, 281]
    for p in img["predictions"]:
        assert set(p) == {"class_index", "label", "score", "box"} and 0 <= p["score"] <= 1
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 <= x1 < 451 and 0 <= y0 <= y1 < 300


def test_out_dir_writes_overlay_maps_json(tmp_path):
    r = run("explain", str(sample_path("coffee")), str(sample_path("chelsea")), "--topk", "2", "--out", str(tmp_path))
    assert r.exit_code == 0, r.stderr
    for stem in ("coffee", "chelsea"):
        assert (tmp_path / f"{stem}_cam.png").stat().st_size > 10_000
        maps = np.load(tmp_path / f"{stem}_maps.npy")
        doc = json.loads((tmp_path / f"{stem}.json").read_text())
        assert maps.shape == (2, doc["images"][0]["height"], doc["images"][0]["width"])
    assert "espresso" in r.stdout  # the human-readable table


def test_class_option_by_name_and_index():
    r = run("explain", str(sample_path("chelsea")), "--class", "tabby", "--class", "285", "--json")
    assert r.exit_code == 0, r.stderr
    assert [p["class_index"] for p in json.loads(r.stdout)["images"][0]["predictions"]] == [281, 285]


def test_folder_and_glob(tmp_path):
    import shutil

    for n in ("chelsea", "coffee"):
        shutil.copy(sample_path(n), tmp_path / f"{n}.png")
    r = run("explain", str(tmp_path), "--topk", "1", "--json")
    assert [os.path.basename(i["path"]) for i in json.loads(r.stdout)["images"]] == ["chelsea.png", "coffee.png"]
    r = run("explain", str(tmp_path / "c*.png"), "--topk", "1", "--json")
    assert len(json.loads(r.stdout)["images"]) == 2


def test_models_lists_kinds():
    r = run("models")
    assert r.exit_code == 0
    assert "efficientnet_lite0" in r.stdout and "needs fine-tuning" in r.stdout
    doc = json.loads(run("models", "--json").stdout)
    kinds = {m["name"]: m["cam_kind"] for m in doc}
    assert kinds["resnet50"] == "exact" and kinds["vgg16_gap"] == "needs-finetune"


def _bad_cases(tmp_path):
    import torch

    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    photo = str(sample_path("chelsea"))
    return {
        "missing file": ([str(tmp_path / "nope.jpg")], "no such file"),
        "no images in directory": ([str(empty_dir)], "no images"),
        "zero-byte jpeg": ([str(odd_images.write_empty_jpeg(tmp_path))], "empty"),
        "truncated jpeg": ([str(odd_images.write_truncated_jpeg(tmp_path))], "truncated"),
        "text file named .jpg": ([str(odd_images.write_text_as_jpeg(tmp_path))], "not an image"),
        "unknown model": ([photo, "--model", "resnet5O"], "unknown model 'resnet5O'"),
        "unknown class name": ([photo, "--class", "tabbby"], "unknown class name 'tabbby'"),
        "checkpoint does not fit": ([photo, "--model", "resnet18", "--weights", str(wrong)], "does not fit model resnet18"),
        "pickle with code": ([photo, "--model", "resnet18", "--weights", str(evil)], "refuses to load"),
        "image over the pixel limit": ([str(odd_images.write_huge_header_png(tmp_path))], "pixels"),
    }


def test_bad_input_one_line_error_nonzero_exit(tmp_path):
    for case, (args, expected) in _bad_cases(tmp_path).items():
        r = run("explain", *args)
        assert r.exit_code != 0, case
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1, (case, err)
        assert err.splitlines()[0].startswith("error:") and expected.lower() in err.lower(), (case, err)
        assert "Traceback" not in err and "pwned" not in r.stdout + err


def test_bad_item_in_a_batch_loses_nothing_else(tmp_path):
    bad = odd_images.write_truncated_jpeg(tmp_path)
    r = run("explain", str(sample_path("chelsea")), str(bad), str(sample_path("coffee")), "--topk", "1", "--json")
    assert r.exit_code == 1
    images = json.loads(r.stdout)["images"]
    assert [("error" in i) for i in images] == [False, True, False] or sorted("error" in i for i in images) == [False, False, True]
    assert sum(1 for i in images if "predictions" in i) == 2


@pytest.mark.slow
def test_real_process_no_traceback_and_python_m(tmp_path):
    exe = [sys.executable, "-m", "camkit"]
    r = subprocess.run([*exe, "explain", str(tmp_path / "missing.jpg")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([*exe, "explain", str(sample_path("chelsea")), "--topk", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["images"][0]["predictions"][0]["label"] == "tiger cat"


def test_method_and_layer_options():
    photo = str(sample_path("chelsea"))
    r = run("explain", photo, "--method", "gradcam", "--topk", "1", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == "gradcam" and doc["images"][0]["predictions"][0]["class_index"] == 282
    for args, expected in ((["--method", "smoothcam"], "unknown CAM method"), (["--method", "gradcam", "--layer", "nope"], "no layer named 'nope'")):
        r = run("explain", photo, *args)
        assert r.exit_code == 2 and expected in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_same_file_name_in_two_folders_keeps_both(tmp_path):
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(sample_path("coffee"), tmp_path / d / "photo.png")
    out = tmp_path / "out"
    for _ in range(2):  # a second run in the same process starts afresh (no state kept between calls)
        r = run("explain", str(tmp_path / "a"), str(tmp_path / "b"), "--topk", "1", "--out", str(out))
        assert r.exit_code == 0, r.stderr
        assert sorted(p.name for p in out.glob("*_cam.png")) == ["photo_1_cam.png", "photo_cam.png"]


def test_several_layers_and_smoothing_reach_the_method_engine():
    """`--layer a --layer b` and `--smooth eigen` give the maps of compute_method_maps with the same options."""
    import torch

    import camkit
    from camkit.cam.methods import compute_method_maps

    photo = sample_path("chelsea")
    layers = ["net.blocks.5", "net.bn2"]
    for args, options in (
        (["--layer", layers[0], "--layer", layers[1]], {"layer": layers}),
        (["--smooth", "eigen"], {"smooth": "eigen"}),
    ):
        r = run("explain", str(photo), "--method", "gradcam", "--topk", "1", "--json", *args)
        assert r.exit_code == 0, r.stderr
        (pred,) = json.loads(r.stdout)["images"][0]["predictions"]
        exp = camkit.explain(photo, method="gradcam", topk=1, **options)
        assert pred["box"] == [int(v) for v in exp.boxes[0]]
        m = camkit.load_model()
        arr, _ = m.preprocess.to_array(camkit.load_image(photo), "crop")
        direct = compute_method_maps(m, torch.from_numpy(arr)[None], "gradcam", [[pred["class_index"]]], **options)
        assert np.allclose(exp.feature_maps[0], direct.maps[0, 0].float().numpy(), atol=1e-5)
    plain = camkit.explain(photo, method="gradcam", topk=1)
    assert not np.allclose(plain.feature_maps[0], exp.feature_maps[0], atol=1e-3)  # eigen changed the map
    r = run("explain", str(photo), "--smooth", "median")
    assert r.exit_code == 2 and "--smooth" in r.stderr and len(r.stderr.strip().splitlines()) == 1
