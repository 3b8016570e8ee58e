"""camkit.limits: memory estimates refuse what cannot fit, in milliseconds and with one line."""

from __future__ import annotations

import pytest
import torch

from camkit import limits
from camkit.errors import ParameterError


def test_activation_probe_matches_hand_count_on_a_tiny_net():
    # conv 3->2 (stride 1) then ReLU: two leaf outputs of 2 x P x P float32 each per image.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU())
    with_grad, without = limits.activation_bytes(net)
    px = limits.PROBE_SIZE**2
    leaf = 2 * px * 4
    inp = 3 * px * 4
    assert with_grad == pytest.approx((2 * 2 * leaf + inp) / px)
    assert without == pytest.approx((4 * leaf + inp) / px)
    assert limits.estimate_input_bytes(net, 100, 3) == int(without * 100 * 100 * 3)
    assert net.training  # the probe restores the mode


def test_input_size_that_cannot_fit_is_refused_with_size_that_fits(lite0, monkeypatch):
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 4 * 1024**3)
    with pytest.raises(ParameterError) as ei:
        limits.check_input_size(lite0, 20000)
    e = ei.value
    assert e.param == "input_size" and e.value == 20000
    msg = str(e)
    assert msg.startswith("input_size=20000 is too large: needs ~") and "4.0 GB are available" in msg
    fits = int(msg.rsplit("; use ", 1)[1].split()[0])
    limits.check_input_size(lite0, fits)  # the suggested size passes
    with pytest.raises(ParameterError):
        limits.check_input_size(lite0, fits + 64)
    limits.check_input_size(lite0, 224, batch_size=16, gradients=True)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "224"])
def test_input_size_must_be_a_positive_int(lite0, bad):
    with pytest.raises(ParameterError, match="must be a positive integer"):
        limits.check_input_size(lite0, bad)


def test_meminfo_is_read():
    avail = limits.available_memory_bytes()
    assert avail is None or avail > 0


def test_maps_memory(monkeypatch):
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 1024**3)
    limits.check_maps_memory(5, 451, 300)
    with pytest.raises(ParameterError, match=r"^topk=1000 is too large: 1000 maps of a 4000x3000 image"):
        limits.check_maps_memory(1000, 4000, 3000)
