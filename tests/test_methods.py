"""camkit.cam.methods: formulas worked by hand, relations to CAM, targets, layers, hooks and state."""

from __future__ import annotations

import gc
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camkit.cam.engine import compute_cams
from camkit.cam.methods import METHODS, compute_method_maps, default_method
from camkit.cam.methods.base import auto_layer
from camkit.errors import ClassSelectionError, ModelError
from camkit.models import load_model
from camkit.models.cam_model import CAMModel
from camkit.models.classifier_model import ClassifierModel

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"
GRADIENT = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"]
# Methods that take a CNN target layer (input-resolution methods refuse layer=, DFF needs a CAM head,
# LeGrad a ViT: each has its own tests).
ALL = [m for m, info in METHODS.items() if m not in ("cam", "dff", "legrad") and info.takes_layer]


# ---------------------------------------------------------------- tiny models


class Quadratic(nn.Module):
    """x [B, 1, 1, 2] is the feature map A itself (layer "feat"); one logit S = sum(A^2) / 2, so dS/dA = A."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    def forward(self, x):
        a = self.feat(x)
        return (a**2).sum(dim=(1, 2, 3))[:, None] / 2


class TinyCNN(nn.Module):
    def __init__(self, inplace: bool = True, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(24, 16)
        self.relu3 = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(self.relu3(self.fc1(self.pool(x).flatten(1))))


def tiny_cam_model() -> CAMModel:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 7))
    return CAMModel(net, lambda n, x: n[3](n[2](n[1](n[0](x)))), "6", name="tiny").eval()


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return load_model("resnet18", weights="random")


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


# ---------------------------------------------------------------- formulas by hand


def test_gradient_formulas_worked_by_hand():
    # A = [[1, 3]] (one channel, h=1, w=2, n=2), S = (1 + 9)/2, g = dS/dA = A = [1, 3].
    x = torch.tensor([[[[1.0, 3.0]]]])
    m = Quadratic()
    got = {meth: compute_method_maps(m, x, meth, classes=[0], layer="feat").maps[0, 0, 0].tolist() for meth in GRADIENT}
    # Grad-CAM: alpha = n * mean(g) = 1 + 3 = 4 -> 4 * A = [4, 12]
    assert got["gradcam"] == pytest.approx([4, 12])
    # HiResCAM = n * g * A = 2 * [1, 9] = [2, 18]; LayerCAM = n * relu(g) * A = the same here
    assert got["hirescam"] == pytest.approx([2, 18])
    assert got["layercam"] == pytest.approx([2, 18])
    # XGrad-CAM: w = n * sum(g A) / sum(A) = 2 * 10 / 4 = 5 -> [5, 15]
    assert got["xgradcam"] == pytest.approx([5, 15])
    # Grad-CAM++: sum(A) = 4, alpha = 1/(2 + 4 g) = [1/6, 1/14]; w = n * (1/6 * 1 + 1/14 * 3) = 2 * 16/42 = 16/21
    assert got["gradcam++"] == pytest.approx([16 / 21, 48 / 21])


def test_gradcam_pp_ignores_negative_gradients():
    # A = [[-1, 2]]: g = A, so only position 1 (g = 2 > 0) counts; sum(A) = 1, alpha = 1/(2 + 1*2) = 1/4,
    # w = n * (1/4 * 2) = 1 -> map = A = [-1, 2]. LayerCAM: n * relu(g) * A = 2 * [0, 4] = [0, 8].
    x = torch.tensor([[[[-1.0, 2.0]]]])
    assert compute_method_maps(Quadratic(), x, "gradcam++", [0], layer="feat").maps[0, 0, 0].tolist() == pytest.approx([-1, 2])
    assert compute_method_maps(Quadratic(), x, "layercam", [0], layer="feat").maps[0, 0, 0].tolist() == pytest.approx([0, 8])


def test_eigencam_worked_by_hand():
    # Channels over 3 positions: [0, 0, 3] and [0, 0, 6]. Centred: [-1, -1, 2] and [-2, -2, 4]; v1 = +-(1, 2)/sqrt 5;
    # projection = +-sqrt5 * [-1, -1, 2]; the sign rule keeps the larger magnitude positive: sqrt5 * [-1, -1, 2].
    x = torch.tensor([[[[0.0, 0.0, 3.0]], [[0.0, 0.0, 6.0]]]])

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.feat = nn.Identity()

        def forward(self, x):
            return self.feat(x).sum(dim=(2, 3))

    got = compute_method_maps(Two(), x, "eigencam", classes=[0, 1], layer="feat").maps[0]
    r5 = math.sqrt(5)
    for row in got:  # class-agnostic: the same map for both classes
        assert row[0].tolist() == pytest.approx([-r5, -r5, 2 * r5], rel=1e-6)


def scorecam_by_loop(model: nn.Module, x: torch.Tensor, layer: str, cls: list[int]) -> torch.Tensor:
    """Algorithm 1 of the Score-CAM paper, one channel and one image at a time."""
    store = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    a = store["a"]
    out = []
    for b in range(x.shape[0]):
        s = []
        for k in range(a.shape[1]):
            up = torch.nn.functional.interpolate(a[b : b + 1, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            with torch.no_grad():
                s.append(model(x[b : b + 1] * mask)[0, cls[b]])
        alpha = torch.softmax(torch.stack(s), 0)
        out.append((alpha[:, None, None] * a[b]).sum(0))
    return torch.stack(out)


@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_scorecam_equals_the_papers_loop_for_any_batch_size(batch_size):
    torch.manual_seed(3)
    m = TinyCNN().eval()
    with torch.no_grad():
        m.conv2.weight[0] = 0.0  # channel 0 of relu2 is constant (bias only): the shared zero-mask path
    x = torch.randn(3, 3, 12, 12)
    cls = [0, 3, 4]
    got = compute_method_maps(m, x, "scorecam", classes=[[c] for c in cls], layer="relu2", batch_size=batch_size).maps[:, 0]
    assert torch.allclose(got, scorecam_by_loop(m, x, "relu2", cls), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- relations to CAM (pool + linear)


@pytest.mark.parametrize("which", ["resnet18", "lite0"])
def test_gradcam_and_hirescam_equal_cam_on_pool_linear(which, request):
    model = request.getfixturevalue(which)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 96)
    cam = compute_method_maps(model, x, "cam", classes=3)
    scale = cam.maps.abs().amax()
    for meth in ("hirescam", "gradcam", "xgradcam"):
        r = compute_method_maps(model, x, meth, classes=cam.class_idx)
        assert torch.equal(r.class_idx, cam.class_idx)
        # camkit's gradient maps are in CAM units: the factor is exactly 1 (HiResCAM: exactly CAM).
        assert (r.maps - cam.maps).abs().max() <= 1e-5 * scale, meth
    # In the papers' own units Grad-CAM = CAM / (h*w): a positive factor per class.
    g = compute_method_maps(model, x, "gradcam", classes=cam.class_idx).maps
    n = g.shape[-1] * g.shape[-2]
    ratio = (g / n).flatten(2).norm(dim=2) / cam.maps.flatten(2).norm(dim=2)
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / n), rtol=1e-5)
    # ... and the CAM delegation is the engine's own result, bias included.
    direct = compute_cams(model, x, 3)
    assert torch.equal(cam.maps, direct.maps.float()) and torch.equal(cam.bias, direct.bias)
    assert torch.count_nonzero(compute_method_maps(model, x, "gradcam", 3).bias) == 0


# ---------------------------------------------------------------- targets


def test_per_image_classes_names_topk_and_callable(lite0):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 64)
    per_image = [["tabby"], [281], ["espresso"]]
    r = compute_method_maps(lite0, x, "gradcam", classes=per_image)
    assert r.class_idx[:, 0].tolist() == [281, 281, 967]
    for i in range(3):  # each image's map is the one it gets alone
        alone = compute_method_maps(lite0, x[i : i + 1], "gradcam", classes=[r.class_idx[i, 0].item()])
        assert torch.allclose(r.maps[i], alone.maps[0], rtol=1e-4, atol=1e-5)
    top = compute_method_maps(lite0, x, "layercam", classes=4)
    assert torch.equal(top.class_idx, top.logits.topk(4, dim=1).indices)
    assert torch.all(top.scores[:, :-1] >= top.scores[:, 1:])
    # Grad-CAM is linear in the score: a callable S3 - S5 gives map(3) - map(5), class_idx -1.
    both = compute_method_maps(lite0, x, "gradcam", classes=[3, 5]).maps
    diff = compute_method_maps(lite0, x, "gradcam", classes=lambda lg: lg[:, 3] - lg[:, 5])
    assert diff.class_idx.tolist() == [[-1]] * 3
    assert torch.allclose(diff.maps[:, 0], both[:, 0] - both[:, 1], atol=1e-4 * both.abs().max())
    assert torch.allclose(diff.scores[:, 0], diff.logits[:, 3] - diff.logits[:, 5])
    with pytest.raises(ClassSelectionError):
        compute_method_maps(lite0, x, "gradcam", classes=["no such class"])
    with pytest.raises(ClassSelectionError):
        compute_method_maps(lite0, x, "cam", classes=lambda lg: lg[:, 0])


# ---------------------------------------------------------------- layers


def test_default_and_named_layers(resnet18):
    vgg_like = ClassifierModel(TinyCNN(), default_layer="relu2", name="tiny")
    x = torch.randn(2, 3, 16, 16)
    assert compute_method_maps(vgg_like, x, "gradcam", 2).layer == "relu2"
    assert compute_method_maps(vgg_like, x, "gradcam", 2, layer="conv1").maps.shape == (2, 2, 16, 16)
    # Plain module: the last >1x1 4-D output that is not an adaptive pool.
    assert auto_layer(TinyCNN(), x) == "relu2"
    assert compute_method_maps(TinyCNN(), x, "hirescam", 1).layer == "relu2"
    assert compute_method_maps(resnet18, torch.randn(1, 3, 64, 64), "gradcam", 1, layer="layer3").maps.shape[-1] == 4
    with pytest.raises(ModelError, match=r"no layer named 'layer9'.*layer4 2x2"):
        compute_method_maps(resnet18, torch.randn(1, 3, 64, 64), "gradcam", 1, layer="layer9")
    with pytest.raises(ModelError, match=r"'fc'.*no spatial map"):
        compute_method_maps(resnet18, torch.randn(1, 3, 64, 64), "gradcam", 1, layer="fc")
    with pytest.raises(ModelError, match=r"'avgpool' outputs a 1x1 map"):
        compute_method_maps(resnet18.net, torch.randn(1, 3, 64, 64), "scorecam", 1, layer="avgpool")
    with pytest.raises(ModelError, match="exact only for a pool\\+linear head"):
        compute_method_maps(vgg_like, x, "cam", 1)
    assert default_method(resnet18) == "cam" and default_method(vgg_like) == "gradcam"


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v3_small", "alexnet"])
def test_gradient_registry_models(name):
    model = load_model(name, weights="random")
    assert isinstance(model, ClassifierModel) and model.cam_kind == "gradient" and model.num_classes == 1000
    x = torch.randn(1, 3, 224 if name == "alexnet" else 64, 224 if name == "alexnet" else 64)  # AlexNet's pool5 is 1x1 below ~100 px
    # The registry's default layer is what the automatic rule finds on the bare network.
    assert auto_layer(model.net, x) == "features"
    r = compute_method_maps(model, x, "gradcam", 2)
    assert r.layer == "features" and r.maps.shape[:2] == (1, 2)
    assert torch.allclose(r.logits, model.net(x), atol=1e-5)


# ---------------------------------------------------------------- hooks, grad modes, model state


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _rss_mb() -> float:
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the tensor count below still checks for leaks
        return 0.0


def _live_tensors() -> int:
    with warnings.catch_warnings():
        # isinstance() on every live object touches torch.distributed's deprecated `reduce_op` alias, which warns
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_thousand_calls_leave_no_hooks_and_no_memory():
    model = ClassifierModel(TinyCNN(), default_layer="relu2", name="tiny")
    x = torch.randn(2, 3, 8, 8)
    methods = ["gradcam", "gradcam++", "hirescam", "scorecam", "eigencam"]
    for meth in methods:  # warm-up (allocator, caches)
        compute_method_maps(model, x, meth, 2)
    gc.collect()
    tensors_before = _live_tensors()
    rss_before = _rss_mb()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would cost more than the work (~5 ms per call)
    try:
        for i in range(1000):
            compute_method_maps(model, x, methods[i % len(methods)], 2)
            assert _hook_count(model) == 0
    finally:
        torch.set_num_threads(threads)
    gc.collect()
    tensors_after = _live_tensors()
    assert tensors_after <= tensors_before
    assert _rss_mb() - rss_before < 16, "resident memory grew over 1,000 calls"
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_when_the_forward_raises():
    class Boom(TinyCNN):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("boom")

    m = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        compute_method_maps(m, torch.randn(1, 3, 8, 8), "gradcam", 1, layer="relu2")
    assert _hook_count(m) == 0


def test_inplace_relu_after_and_at_the_target_layer():
    torch.manual_seed(0)
    a, b = TinyCNN(inplace=True), TinyCNN(inplace=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 10, 10)
    for meth in ALL:
        for layer in ("conv2", "relu2", "conv1"):  # conv2/conv1 are followed by an in-place ReLU
            ra = compute_method_maps(a, x, meth, [1, 2], layer=layer)
            rb = compute_method_maps(b, x, meth, [1, 2], layer=layer)
            assert torch.allclose(ra.maps, rb.maps, rtol=1e-5, atol=1e-6), (meth, layer)
    # The captured conv2 output keeps its negative values (an in-place ReLU did not clobber it).
    h = compute_method_maps(a, x, "eigencam", 1, layer="conv2").maps
    assert (h < 0).any()


def test_outer_no_grad_inference_mode_and_restored_state(resnet18):
    x = torch.randn(2, 3, 64, 64)
    ref = compute_method_maps(resnet18, x, "gradcam", 2).maps
    with torch.no_grad():
        inside = compute_method_maps(resnet18, x, "gradcam", 2)
    assert torch.equal(inside.maps, ref) and not inside.maps.requires_grad
    with torch.inference_mode():
        with pytest.raises(ModelError, match="inference_mode"):
            compute_method_maps(resnet18, x, "gradcam", 2)
        assert compute_method_maps(resnet18, x, "eigencam", 2).maps.shape == (2, 2, 2, 2)
        assert compute_method_maps(resnet18, x, "cam", 2).maps.shape == (2, 2, 2, 2)
    # Mixed requires_grad flags and train mode come back as they were, even after an error.
    resnet18.train()
    resnet18.net.fc.weight.requires_grad_(False)
    flags = [p.requires_grad for p in resnet18.parameters()]
    try:
        train_out = compute_method_maps(resnet18, x, "gradcam++", 2)
        assert torch.allclose(compute_method_maps(resnet18.eval(), x, "gradcam++", 2).maps, train_out.maps)  # eval inside
        resnet18.train()
        with pytest.raises(ClassSelectionError):
            compute_method_maps(resnet18, x, "hirescam", [5000])
        assert [p.requires_grad for p in resnet18.parameters()] == flags
        assert all(m.training for m in resnet18.modules())
        assert all(p.grad is None for p in resnet18.parameters())
    finally:
        resnet18.net.fc.weight.requires_grad_(True)
        resnet18.eval()


# ---------------------------------------------------------------- real photos


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"ILSVRC val sample not found at {SAMPLE}")
def test_real_photos_localize_with_every_fast_method(lite0):
    """The embedded Lite0 on the 12 real ILSVRC photos: CVPR16 boxes (tau 0.2) of the GT class's map.

    Score-CAM is left out here (1280 masked forwards per photo); its real-photo overlay is in
    docs/methods_overlays.png.
    """
    from PIL import Image

    from camkit.cam.geometry import to_original
    from camkit.localize import cvpr16_box
    from camkit.metrics.iou import box_iou_inclusive

    meta = SAMPLE / "metadata/ILSVRC/test"
    labels = dict(line.split(",") for line in (meta / "class_labels.txt").read_text().split())
    gt: dict[str, list] = {}
    for line in (meta / "localization.txt").read_text().split():
        p, *box = line.split(",")
        gt.setdefault(p, []).append([int(float(v)) for v in box])
    paths = sorted(labels)
    arrays, geos = zip(*(lite0.preprocess.to_array(Image.open(SAMPLE / p).convert("RGB"), "squash") for p in paths), strict=True)
    x = torch.from_numpy(np.stack(arrays))
    cls = [[int(labels[p])] for p in paths]
    hits, boxes = {}, {}
    for meth in ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"]:
        r = compute_method_maps(lite0, x, meth, classes=cls)
        found = []
        for i in range(len(paths)):
            m = to_original(r.maps[i].numpy(), geos[i], "bicubic")[0]
            found.append(cvpr16_box(m, 0.2))
        boxes[meth] = np.stack(found)
        hits[meth] = sum(
            float(box_iou_inclusive(boxes[meth][i : i + 1], np.array(gt[p])).max()) >= 0.5 for i, p in enumerate(paths)
        )
    print("IoU>=0.5 hits of 12:", hits)
    # Grad-CAM, XGrad-CAM and HiResCAM are CAM on this pool+linear head: identical boxes.
    for meth in ("gradcam", "xgradcam", "hirescam"):
        assert np.array_equal(boxes[meth], boxes["cam"]), meth
    assert hits["cam"] >= 6
    for meth in ("gradcam++", "layercam", "eigencam"):
        assert hits[meth] >= 5, (meth, hits)
