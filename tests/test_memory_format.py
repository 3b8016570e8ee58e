"""load_model lays a convolutional network's weights out channels-last (camkit.models.memory_format): which
models, the opt-out, and that a real photo gets the same classes, maps (to float rounding) and boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from camkit import explain
from camkit.models import load_model
from camkit.models.memory_format import OPT_OUT_ENV, channels_last_helps, prefer_channels_last


def _four_d(model) -> list[torch.Tensor]:
    return [t for t in [*model.parameters(), *model.buffers()] if t.dim() == 4]


def _laid_out(model, fmt: torch.memory_format) -> bool:
    tensors = _four_d(model)
    return bool(tensors) and all(t.is_contiguous(memory_format=fmt) for t in tensors)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "vgg16_gap"])
def test_a_convolutional_network_is_loaded_channels_last(name):
    model = load_model(name, "random")
    # a 1x1 convolution's weight [C, K, 1, 1] is contiguous either way: the 3x3 ones say which layout it is
    assert _laid_out(model, torch.channels_last)
    assert not all(t.is_contiguous() for t in _four_d(model) if t.shape[-1] > 1)


@pytest.mark.parametrize("name", ["vit_b_32", "convnext_tiny"])
def test_a_network_with_layer_norm_keeps_its_layout(name):
    model = load_model(name, "random")
    assert not channels_last_helps(model)
    assert _laid_out(model, torch.contiguous_format)


def test_the_environment_variable_opts_out(monkeypatch):
    monkeypatch.setenv(OPT_OUT_ENV, "0")
    model = load_model("resnet18", "random")
    assert _laid_out(model, torch.contiguous_format)
    assert not _laid_out(model, torch.channels_last)


def test_a_module_that_is_not_a_cnn_is_left_alone():
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    assert not channels_last_helps(mlp)
    assert prefer_channels_last(mlp) is mlp


def test_a_photo_gets_the_same_classes_maps_and_boxes_either_way(monkeypatch):
    """The embedded EfficientNet-Lite0 on chelsea and coffee: NCHW and channels-last differ by float rounding
    only (measured ~1e-6 of the map's range); classes, scores' order and the CVPR16 boxes are identical."""
    fast = load_model()
    monkeypatch.setenv(OPT_OUT_ENV, "0")
    plain = load_model()
    assert _laid_out(fast.net, torch.channels_last) and _laid_out(plain.net, torch.contiguous_format)
    for photo in (data.chelsea(), data.coffee()):
        a, b = explain(Image.fromarray(photo), fast), explain(Image.fromarray(photo), plain)
        assert list(a.class_indices) == list(b.class_indices)
        maps_a, maps_b = np.asarray(a.maps), np.asarray(b.maps)
        assert np.abs(maps_a - maps_b).max() <= 1e-5 * np.abs(maps_b).max()
        assert np.abs(np.asarray(a.logits) - np.asarray(b.logits)).max() <= 1e-4
        assert np.array_equal(np.asarray(a.boxes), np.asarray(b.boxes))
