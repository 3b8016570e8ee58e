"""Weights: one parse of the ``weights`` argument, downloads that never touch stdout and fail fast
offline, and checkpoint errors that say what is wrong (NaN parameters, a folder instead of a file)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.errors import WeightsError
from camkit.io.samples import sample_path
from camkit.models import load_model
from camkit.models.weights import WeightsChoice, parse_weights


@pytest.mark.parametrize(
    "value, kind, name",
    [
        (None, "default", None),
        ("random", "random", None),
        ("NONE", "random", None),
        ("Random", "random", None),
        ("DEFAULT", "default", None),
        ("default", "default", None),
        ("IMAGENET1K_V2", "named", "IMAGENET1K_V2"),
        ("embedded", "named", "embedded"),
        ("runs/best.pt", "file", None),
        ("ckpt.pth", "file", None),
        (Path("best"), "file", None),
    ],
)
def test_parse_weights_kinds(value, kind, name):
    w = parse_weights(value)
    assert w.kind == kind and w.name == name
    assert parse_weights(w) is w  # an already parsed value passes through unchanged
    if kind == "file":
        assert w.path == Path(value)


def test_parse_weights_existing_file_without_dot_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mycheckpoint").write_bytes(b"x")
    assert parse_weights("mycheckpoint").kind == "file"
    assert parse_weights("IMAGENET1K_V1").kind == "named"


def test_weights_choice_is_frozen():
    w = parse_weights("random")
    with pytest.raises(AttributeError):
        w.kind = "file"  # type: ignore[misc]
    assert isinstance(w, WeightsChoice)


def _fake_hub_download(monkeypatch, tmp_path):
    """torch.hub's download replaced by one that writes a random resnet18 state dict (offline);
    torch.hub's own ``load_state_dict_from_url`` (which prints ``Downloading: ...``) still runs."""
    import torchvision

    import camkit.models.weights as weights_mod

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        torch.save(torchvision.models.resnet18().state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setattr(weights_mod, "check_download_host", lambda url, timeout=3.0: None)
    return calls


def test_json_stdout_is_only_the_document_on_first_download(monkeypatch, tmp_path):
    calls = _fake_hub_download(monkeypatch, tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["explain", str(sample_path("chelsea")), "--model", "resnet18", "--json", "--topk", "2"],
                      catch_exceptions=False)
    assert calls, "the download path was not exercised"
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # nothing but the document on stdout
    assert doc["model"] == "resnet18" and len(doc["images"][0]["predictions"]) == 2
    assert "Downloading" in r.stderr  # torch.hub's message still reaches the user, on stderr


def test_offline_download_fails_fast_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: a download is needed

    def hanging_dns(*a, **k):  # an offline resolver that answers only after its long timeout
        time.sleep(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        load_model("resnet18")
    elapsed = time.perf_counter() - t0
    msg = str(e.value)
    assert elapsed < 6, f"offline failure took {elapsed:.1f}s"
    assert "\n" not in msg and "resnet18" in msg and "weights=PATH" in msg and "--weights" not in msg


def test_offline_timm_weights_fail_fast_and_the_cli_names_the_flag(monkeypatch, tmp_path):
    """A timm/ model's pretrained weights offline: one line within seconds (no minute of Hugging Face retries),
    and the CLI turns the library's ``weights=PATH`` hint into its flag."""
    pytest.importorskip("timm")
    import huggingface_hub.constants as hf_constants

    offline_before = hf_constants.HF_HUB_OFFLINE
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def hanging_dns(*a, **k):
        time.sleep(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["explain", str(sample_path("chelsea")), "--model", "timm/vit_tiny_patch16_224",
                                 "--method", "gradcam"])
    elapsed = time.perf_counter() - t0
    assert r.exit_code == 2 and elapsed < 15, (r.exit_code, elapsed, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert "timm/vit_tiny_patch16_224" in line and "--weights PATH" in line and "weights=PATH" not in line
    assert hf_constants.HF_HUB_OFFLINE == offline_before  # the offline switch was restored


def test_nan_checkpoint_names_the_parameters(tmp_path):
    import torchvision

    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    sd["fc.weight"][0, :3] = float("nan")
    sd["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "nan.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as e:
        load_model("resnet18", weights=str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "2 tensors" in msg and "fc.weight (3 NaN)" in msg and "layer1.0.conv1.weight (1 inf)" in msg


def test_folder_as_weights_says_folder_and_what_to_pass(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(WeightsError) as e:
        load_model("resnet18", weights=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "is a folder" in msg and "no such" not in msg
    assert str(tmp_path / "best.pt") in msg and "weights=" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="is a folder.*no .pt"):
        load_model("resnet18", weights=empty)


def test_missing_file_names_the_parameter(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_model("resnet18", weights=str(tmp_path / "nope.pt"))
    assert "no such checkpoint file" in str(e.value) and "--weights" not in str(e.value)
