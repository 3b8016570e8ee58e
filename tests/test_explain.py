"""camkit.explain on real photos: classes, hand-annotated boxes, the ILSVRC sample, geometry, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import HAND_BOXES
from PIL import Image

import camkit
from camkit.cam import upsample
from camkit.cam.geometry import to_original, window_pixels
from camkit.io.samples import sample_path
from camkit.metrics import box_iou_inclusive
from camkit.preprocess import Preprocess


def _iou(a, b) -> float:
    return float(box_iou_inclusive(np.asarray([a]), np.asarray([b]))[0, 0])


@pytest.mark.parametrize("name", sorted(HAND_BOXES))
def test_bundled_photos_class_and_box(lite0, name):
    classes, box = HAND_BOXES[name]
    e = camkit.explain(sample_path(name), model=lite0, topk=3)
    assert int(e.class_indices[0]) in classes, (name, e.labels)
    assert _iou(e.boxes[0], box) >= 0.5, (name, e.boxes[0].tolist(), box)
    # the box lies inside the image and inside the window the network saw
    x0, y0, x1, y1 = e.seen_box
    b = e.boxes[0]
    assert x0 <= b[0] <= b[2] <= x1 and y0 <= b[1] <= b[3] <= y1


def test_chelsea_top3_scores(lite0):
    # the embedded Lite0 weights on skimage's chelsea, measured: tiger cat .39, Egyptian cat .36, tabby .17
    e = camkit.explain(sample_path("chelsea"), model=lite0, topk=3)
    assert e.class_indices.tolist() == [282, 285, 281]
    np.testing.assert_allclose(e.scores, [0.39, 0.36, 0.17], atol=0.01)
    assert e.labels == ["tiger cat", "Egyptian cat", "tabby"]


def test_exactness_through_the_api(lite0):
    e = camkit.explain(sample_path("coffee"), model=lite0, topk=5)
    bias = lite0.classifier.bias.detach().numpy()[e.class_indices]
    np.testing.assert_allclose(e.feature_maps.mean(axis=(1, 2)) + bias, e.logits, rtol=1e-4, atol=1e-4)


def test_ilsvrc_sample_gt_class_boxes(lite0, ilsvrc_sample):
    from camkit.datasets import read_ilsvrc

    ds = read_ilsvrc(ilsvrc_sample)
    hits = {}
    for mode in ("crop", "squash"):
        exps = camkit.explain([s.image_path for s in ds.samples], model=lite0,
                              classes=[[s.class_index] for s in ds.samples], resize_mode=mode)
        hits[mode] = sum(
            float(box_iou_inclusive(e.boxes[:1].astype(float), s.boxes).max()) >= 0.5 for e, s in zip(exps, ds.samples, strict=True)
        )
    print(f"\nILSVRC sample, GT-class CVPR16 boxes with IoU >= 0.5: crop {hits['crop']}/12, squash {hits['squash']}/12")
    # Measured on this sample (efficientnet_lite0): crop 7/12, squash 8/12 ("most images").
    assert hits["squash"] >= 8 and hits["crop"] >= 7


def test_same_input_twice_identical(lite0):
    a = camkit.explain(sample_path("motorcycle"), model=lite0, topk=2)
    b = camkit.explain(sample_path("motorcycle"), model=lite0, topk=2)
    assert np.array_equal(a.maps, b.maps) and json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def test_batch_equals_single_and_per_image_classes(lite0):
    paths = [sample_path("chelsea"), sample_path("coffee")]
    both = camkit.explain(paths, model=lite0, classes=[[281], ["espresso"]])
    assert [int(e.class_indices[0]) for e in both] == [281, 967]
    one = camkit.explain(paths[1], model=lite0, classes=["espresso"])
    np.testing.assert_allclose(both[1].maps, one.maps, rtol=1e-4, atol=1e-4)


def test_class_names_and_errors(lite0):
    from camkit.errors import ClassSelectionError

    e = camkit.explain(sample_path("chelsea"), model=lite0, classes=["Tabby", 285])
    assert e.class_indices.tolist() == [281, 285]
    with pytest.raises(ClassSelectionError, match="unknown class name 'tabbby'; did you mean 'tabby'"):
        camkit.explain(sample_path("chelsea"), model=lite0, classes=["tabbby"])
    with pytest.raises(ClassSelectionError, match="out of range"):
        camkit.explain(sample_path("chelsea"), model=lite0, classes=[1000])


def test_crop_geometry_worked_by_hand():
    # chelsea is 451x300. Resize 256 -> 384x256 (int(256*451/300) = 384), centre crop 224:
    # left = round((384-224)/2) = 80, top = round((256-224)/2) = 16. The window in original pixels is
    # x: 80*451/384 = 93.96 .. 304*451/384 = 357.04 -> pixel centres 94..356; y: 16*300/256 = 18.75 ..
    # 240*300/256 = 281.25 -> 19..280.
    g = Preprocess().geometry(451, 300, "crop")
    assert (g.crop_x, g.crop_y, round(g.scale_x, 6)) == (80, 16, round(451 / 384, 6))
    assert window_pixels(g) == (94, 19, 356, 280)


def test_squash_box_mapping_worked_by_hand():
    # 448x448 squashed to 224: each input pixel is 2x2 original pixels. Input box 10..30 covers
    # original pixels 20..61 (x1: (30+1)*2 - 1 = 61).
    g = Preprocess().geometry(448, 448, "squash")
    assert g.input_to_original_boxes(np.array([10, 20, 30, 40])).tolist() == [20, 40, 61, 81]


def test_to_original_equals_torch_upsample_on_identity_geometry():
    # Original == input (224x224 squash): the warp must equal F.interpolate (align_corners=False).
    maps = torch.randn(1, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    g = Preprocess().geometry(224, 224, "squash")
    for mode in ("bilinear", "bicubic"):
        ours = to_original(maps[0].numpy(), g, mode)
        ref = upsample(maps, (224, 224), mode)[0].numpy()
        np.testing.assert_allclose(ours, ref, atol=2e-3 * float(np.abs(ref).max()))


def test_peak_lands_where_the_network_saw_it():
    # A single hot feature cell maps to the matching place of the original, through the crop.
    g = Preprocess().geometry(451, 300, "crop")
    maps = np.zeros((1, 7, 7), np.float32)
    maps[0, 3, 6] = 1.0  # centre row, rightmost column of the 224 crop
    out = to_original(maps, g, "bilinear")[0]
    y, x = np.unravel_index(out.argmax(), out.shape)
    # cell (3, 6) spans input x 192..224, y 96..128 -> original x (192+80)*451/384 = 319 .. 357, y ~131..169
    assert 319 <= x <= 357 and 131 <= y <= 169
    assert out[:, :94].max() == 0 and out[:, 357:].max() == 0  # outside the window: the map's minimum


@pytest.mark.parametrize(
    "writer", ["write_grayscale", "write_rgba", "write_palette_png", "write_cmyk_jpeg", "write_png16",
               "write_exif_rotated_jpeg", "write_tiny", "write_wide"],
)
def test_odd_but_valid_images(lite0, tmp_path, writer):
    from fixtures import odd_images

    path = getattr(odd_images, writer)(tmp_path)
    img = camkit.load_image(path)
    e = camkit.explain(path, model=lite0, topk=2)
    assert e.maps.shape == (2, img.height, img.width) and (e.width, e.height) == img.size
    assert (e.boxes[:, 0] <= e.boxes[:, 2]).all() and (e.boxes[:, 2] < img.width).all() and (e.boxes[:, 3] < img.height).all()
    assert np.isfinite(e.maps).all()


def test_overlay_and_save(lite0, tmp_path):
    e = camkit.explain(Image.open(sample_path("chelsea")), model=lite0, topk=3)
    ov = e.overlay()
    assert ov.dtype == np.uint8 and ov.shape[0] == 300 and ov.shape[1] == 3 * 451 + 2 * 6
    paths = e.save(tmp_path, "cat")
    assert np.array_equal(np.load(paths["maps"]), e.maps)
    doc = json.loads(paths["json"].read_text())
    assert doc["images"][0]["predictions"][0]["label"] == "tiger cat"


def test_tensor_input_torchvision_convention(lite0):
    from torchvision.io import decode_image

    path = sample_path("chelsea")
    t = decode_image(str(path))  # uint8 [3, H, W]
    from_tensor = camkit.explain(t, model=lite0, topk=2)
    from_path = camkit.explain(path, model=lite0, topk=2)
    assert np.array_equal(from_tensor.maps, from_path.maps) and from_tensor.labels == from_path.labels
    batch = camkit.explain(torch.stack([t, t]).float() / 255, model=lite0, topk=1)
    assert len(batch) == 2 and batch[0].labels[0] == "tiger cat"
