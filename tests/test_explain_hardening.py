"""camkit.explain: wrong kinds of input give one-line ParameterErrors naming what was passed;
encoded image bytes are decoded like a file; topk is checked, never clamped; malloc tuning."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import camkit
from camkit.errors import ImageError, ParameterError
from camkit.io.samples import sample_path


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (None, "images=None is not an image; pass a path, PIL image"),
        (7, "images=7 is not an image; pass a path"),
        ([sample_path("chelsea"), 3.5], "images[1]=3.5 is not an image"),
        ([], "images=[] is empty"),
        (torch.zeros(300, 451, 3, dtype=torch.uint8),
         "images=a torch.uint8 tensor of shape [300, 451, 3] is not an image tensor: expected [3, H, W] or [B, 3, H, W] "
         "(channels first); it looks channels-last: pass t.permute(2, 0, 1)"),
        (torch.zeros(2, 5, 8, 8), "images=a torch.float32 tensor of shape [5, 8, 8] is not an image tensor"),
        (b"not an image at all", "images=19 bytes are not an encoded image"),
    ],
)
def test_wrong_inputs_give_one_line_parameter_errors(lite0, images, message):
    with pytest.raises(ParameterError) as ei:
        camkit.explain(images, lite0)
    text = str(ei.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_encoded_bytes_are_explained_like_the_file(lite0):
    path = sample_path("chelsea")
    data = path.read_bytes()
    from_bytes = camkit.explain(data, lite0, topk=2)
    from_file = camkit.explain(path, lite0, topk=2)
    assert from_bytes.class_indices.tolist() == from_file.class_indices.tolist() == [282, 285]
    np.testing.assert_array_equal(from_bytes.maps, from_file.maps)
    assert from_bytes.path is None


def test_truncated_bytes_name_the_problem(lite0):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, "JPEG")
    with pytest.raises(ParameterError, match=r"^images=\d+ bytes cannot be decoded"):
        camkit.explain(buf.getvalue()[:200], lite0)


def test_topk_above_classes_is_refused_not_clamped(lite0):
    with pytest.raises(ParameterError, match=r"^topk=5000 is more than the model's 1000 classes; use 1000 or less$"):
        camkit.explain(sample_path("chelsea"), lite0, topk=5000)
    with pytest.raises(ParameterError, match=r"^topk=0 must be a positive integer"):
        camkit.explain(sample_path("chelsea"), lite0, topk=0)


def test_missing_file_is_still_an_image_error(lite0, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        camkit.explain(tmp_path / "nope.jpg", lite0)


def test_save_bounds_maps_and_overlay(lite0, tmp_path):
    from camkit.explanation import MAX_SAVED_MAPS

    e = camkit.explain(sample_path("chelsea"), lite0, topk=MAX_SAVED_MAPS + 5)
    paths = e.save(tmp_path)
    assert np.load(paths["maps"]).shape == (MAX_SAVED_MAPS, 300, 451)
    with Image.open(paths["overlay"]) as im:
        single = e.overlay(0)
        assert im.size[1] == single.shape[0] and im.size[0] < (MAX_SAVED_MAPS + 1) * single.shape[1]
    import json

    doc = json.loads(paths["json"].read_text())
    assert len(doc["images"][0]["predictions"]) == MAX_SAVED_MAPS + 5 and doc["images"][0]["saved_maps"] == MAX_SAVED_MAPS


_PROBE = (
    "import camkit, camkit.malloc_tuning as mt, skimage.data\n"
    "{before}"
    "assert not mt.malloc_tuning_applied()\n"
    "camkit.explain(skimage.data.chelsea(), topk=1)\n"
    "print(mt.malloc_tuning_applied())\n"
)


@pytest.mark.parametrize(
    ("env", "before", "applied"),
    [({}, "", "True"), ({"CAMKIT_NO_MALLOC_TUNING": "1"}, "", "False"), ({}, "mt.disable_malloc_tuning()\n", "False")],
)
def test_malloc_tuning_applies_on_first_heavy_call_with_opt_outs(env, before, applied):
    full_env = {k: v for k, v in os.environ.items() if k != "CAMKIT_NO_MALLOC_TUNING"} | env
    r = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)], capture_output=True, text=True,
                       env=full_env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == applied


_KEEP_THEN_RELEASE = (
    "import numpy as np, camkit.malloc_tuning as mt\n"
    "def anon(): return int(open('/proc/self/status').read().split('RssAnon:')[1].split()[0]) // 1024\n"
    "assert mt.apply_malloc_tuning()\n"
    "a = np.ones(50_000_000)\n"  # 400 MB, from the heap under the tuning
    "held = anon(); del a; kept = anon()\n"
    "assert mt.release_free_memory()\n"
    "print(held, kept, anon())\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, /proc")
def test_memory_the_tuning_kept_is_released_on_request():
    env = {k: v for k, v in os.environ.items() if k != "CAMKIT_NO_MALLOC_TUNING"}
    r = subprocess.run([sys.executable, "-c", _KEEP_THEN_RELEASE], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    held, kept, released = map(int, r.stdout.split())  # MB of anonymous memory
    assert kept > held - 50  # freed, but kept by the process (the tuning's point)
    assert released < kept - 350  # given back: the 400 MB block left the process


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize_mode": "fit"}, "resize_mode='fit' is not a resize mode; use 'crop' or 'squash'"),
        ({"interpolation": "nearest"}, "interpolation='nearest' is not a map interpolation"),
        ({"tau": 1.5}, "tau=1.5 is outside [0, 1]"),
        ({"batch_size": 0}, "batch_size=0 must be a positive integer"),
    ],
)
def test_option_ranges_are_parameter_errors(lite0, kwargs, message):
    with pytest.raises(ParameterError) as ei:
        camkit.explain(sample_path("chelsea"), lite0, **kwargs)
    assert str(ei.value).startswith(message)
