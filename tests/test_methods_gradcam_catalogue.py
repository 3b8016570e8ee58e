"""pytorch-grad-cam's method catalogue in camkit: parity with pytorch-grad-cam 1.5.7 where it has the method,
hand-worked values on tiny models, and the documented departures (reproduced, then compared).

Parity convention (as tests/test_method_parity.py): pytorch-grad-cam returns ReLU -> min-max -> resize ->
ReLU -> min-max maps; camkit's raw maps go through that same pipeline before comparing, max abs
difference <= 1e-4 on [0, 1] maps. Networks: resnet18 with random weights (seed 0, a batch of 4 random
112 px inputs, a different class per image) and the embedded EfficientNet-Lite0 on skimage's chelsea.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pgc = pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

from camkit.cam.methods import METHODS, compute_method_maps  # noqa: E402
from camkit.cam.methods.base import activations_and_logits, model_state  # noqa: E402
from camkit.models import load_model  # noqa: E402

TOL = 1e-4


def pgc_pipeline(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing (BaseCAM.compute_cam_per_layer + aggregate_multi_layers)."""
    return scale_cam_image(np.maximum(scale_cam_image(np.maximum(raw, 0), size), 0))


class Quadratic(nn.Module):
    """x [B, 1, 1, w] is the feature map A itself (layer "feat"); one logit S = sum(A^2) / 2: dS/dA = A, H = I."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    def forward(self, x):
        return (self.feat(x) ** 2).sum(dim=(1, 2, 3))[:, None] / 2


class Linear2(nn.Module):
    """x [B, K, h, w] is A (layer "feat"); logits = the channel sums (class c = channel c)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    def forward(self, x):
        return self.feat(x).sum(dim=(2, 3))


@pytest.fixture(scope="module")
def r18_case():
    torch.manual_seed(0)
    model = load_model("resnet18", weights="random")
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        logits = model(x)
    classes = [int(logits[i].argsort(descending=True)[r]) for i, r in enumerate([0, 1, 2, 4])]
    return model, x, classes


@pytest.fixture(scope="module")
def chelsea_x(lite0):
    import skimage.data
    from PIL import Image

    arr, _ = lite0.preprocess.to_array(Image.fromarray(skimage.data.chelsea()), "crop")
    return torch.from_numpy(arr)[None]


def camkit_raw(model, x, method, classes, layer=None) -> np.ndarray:
    r = compute_method_maps(model, x, method, classes=[[c] for c in classes], layer=layer)
    assert r.class_idx[:, 0].tolist() == classes
    return r.maps[:, 0].numpy()


def peer_maps(cls, model, layer, x, classes, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with cls(model=model.net, target_layers=[model.net.get_submodule(layer)], **kw) as peer:
            return peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def size_of(x):
    return (x.shape[-1], x.shape[-2])


def test_every_method_has_its_table_entry():
    for name in ("ablationcam", "eigengradcam", "segeigencam", "gradcamelementwise", "kpcacam", "fem", "shapleycam",
                 "finercam", "randomcam", "fullgrad", "guidedbackprop", "guidedgradcam", "refinecam", "sess",
                 "sobelcam", "dff"):
        info = METHODS[name]
        assert info.title and info.paper and isinstance(info.needs_gradients, bool)


# ---------------------------------------------------------------- hand-worked values


def test_gradient_variants_worked_by_hand():
    # A = [[1, -3]] (n = 2), S = (1 + 9)/2, g = A: g o A = [1, 9], so element-wise = n * [1, 9] = [2, 18].
    x = torch.tensor([[[[1.0, -3.0]]]])
    got = compute_method_maps(Quadratic(), x, "gradcamelementwise", [0], layer="feat").maps[0, 0, 0]
    assert got.tolist() == pytest.approx([2, 18])
    # ShapleyCAM: H = I, so g - H A / 2 = A / 2; w = n * mean(A / 2) = sum(A) / 2 = -1 -> map = -A = [-1, 3].
    got = compute_method_maps(Quadratic(), x, "shapleycam", [0], layer="feat").maps[0, 0, 0]
    assert got.tolist() == pytest.approx([-1, 3])
    # Grad-CAM of the same: w = sum(g) = -2 -> [-2, 6]: ShapleyCAM halves it here (the Hessian term).
    assert compute_method_maps(Quadratic(), x, "gradcam", [0], layer="feat").maps[0, 0, 0].tolist() == pytest.approx([-2, 6])


def test_eigen_gradient_variants_worked_by_hand():
    # Two channels over 3 positions, S = channel sums (Linear2): g = 1 for class 0 on channel 0, 0 elsewhere.
    # Class 0: g o A = [[0,0,3],[0,0,0]] * n; centred [-1,-1,2]*n on channel 0 -> projection +-n*[-1,-1,2] -> sign rule.
    x = torch.tensor([[[[0.0, 0.0, 3.0]], [[0.0, 0.0, -6.0]]]])
    n = 3
    for meth in ("eigengradcam", "segeigencam"):
        got = compute_method_maps(Linear2(), x, meth, classes=[0], layer="feat").maps[0, 0, 0]
        assert got.tolist() == pytest.approx([-n, -n, 2 * n], rel=1e-6), meth
    # Class 1: g o A = [[0,0,0],[0,0,-6]]; |g| o A the same here (g = 1 >= 0). Centred: [2, 2, -4] -> sign rule -> [-2,-2,4]*n.
    got = compute_method_maps(Linear2(), x, "segeigencam", classes=[1], layer="feat").maps[0, 0, 0]
    assert got.tolist() == pytest.approx([-2 * n, -2 * n, 4 * n], rel=1e-6)


def test_fem_worked_by_hand():
    # Channel 0 over 4 positions [0, 0, 0, 8]: mean 2, std sqrt(12) = 3.46, th(k=2) = 8.93 -> no position above,
    # w0 = 0. Channel 1 [0, 0, 0, 20] * 1 with k = 1: use k_sigma=1 through the function.
    from camkit.cam.methods.fem import fem_maps

    a = torch.tensor([[[[0.0, 0.0, 0.0, 8.0]], [[1.0, 1.0, 1.0, 1.0]], [[0.0, 1.0, 2.0, 3.0]]]])
    # k = 1: ch0 mean 2 std 3.464 th 5.46 -> 1 of 4 above -> w0 = 1/4; ch1 std 0 th 1 -> none above (strict) -> 0;
    # ch2 mean 1.5 std 1.118 th 2.618 -> [3] above -> w2 = 1/4. Map = (A0 + A2) / 4.
    assert fem_maps(a, k_sigma=1.0)[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.5, 2.75])
    assert compute_method_maps(Linear2(), a, "fem", classes=[0, 1], layer="feat").maps.abs().sum() == 0  # k = 2: nothing stands out


def test_kpca_with_the_linear_kernel_is_eigencam():
    from camkit.cam.methods.eigencam import eigencam_maps
    from camkit.cam.methods.kpca import kpca_maps

    torch.manual_seed(0)
    a = torch.randn(3, 16, 5, 6)
    assert torch.allclose(kpca_maps(a, kernel="linear"), eigencam_maps(a), atol=1e-5)


def test_randomcam_is_seeded_and_class_specific(r18_case):
    from camkit.cam.methods.randomcam import random_weights

    model, x, classes = r18_case
    a_ = compute_method_maps(model, x, "randomcam", classes=2)
    b_ = compute_method_maps(model, x, "randomcam", classes=2)
    assert torch.equal(a_.maps, b_.maps)
    assert not torch.allclose(a_.maps[:, 0], a_.maps[:, 1])
    with model_state(model), torch.no_grad():
        a, _ = activations_and_logits(model, x, None, need_grad=False)
    w = random_weights(4, 512, 2, seed=0)
    assert torch.allclose(a_.maps, torch.einsum("bjk,bkhw->bjhw", w, a), atol=1e-5)
    assert float(w.min()) >= -1 and float(w.max()) < 1


# ---------------------------------------------------------------- parity: layer-map methods


@pytest.mark.parametrize("method", ["gradcamelementwise", "segeigencam", "shapleycam", "fem", "kpcacam"])
def test_layer_methods_match_pytorch_grad_cam_resnet18(r18_case, method):
    from pytorch_grad_cam import FEM, KPCA_CAM, GradCAMElementWise, SegEigenCAM, ShapleyCAM

    peer_cls = {"gradcamelementwise": GradCAMElementWise, "segeigencam": SegEigenCAM, "shapleycam": ShapleyCAM,
                "fem": FEM, "kpcacam": KPCA_CAM}[method]
    model, x, classes = r18_case
    mine = pgc_pipeline(camkit_raw(model, x, method, classes), size_of(x))
    theirs = peer_maps(peer_cls, model, "layer4", x, classes)
    assert np.abs(mine - theirs).max() <= TOL, f"{method}: {np.abs(mine - theirs).max():.2e}"


@pytest.mark.parametrize("method", ["gradcamelementwise", "segeigencam", "fem", "kpcacam"])
def test_layer_methods_match_pytorch_grad_cam_on_chelsea(lite0, chelsea_x, method):
    from pytorch_grad_cam import FEM, KPCA_CAM, GradCAMElementWise, SegEigenCAM

    peer_cls = {"gradcamelementwise": GradCAMElementWise, "segeigencam": SegEigenCAM, "fem": FEM, "kpcacam": KPCA_CAM}[method]
    classes = [281]  # tabby
    mine = pgc_pipeline(camkit_raw(lite0, chelsea_x, method, classes), size_of(chelsea_x))
    theirs = peer_maps(peer_cls, lite0, "bn2", chelsea_x, classes)
    assert np.abs(mine - theirs).max() <= TOL, f"{method}: {np.abs(mine - theirs).max():.2e}"


def test_eigengradcam_matches_pytorch_grad_cam_up_to_its_sign(r18_case):
    """pytorch-grad-cam's EigenGradCAM keeps the SVD's arbitrary sign; camkit's sign rule picks one of the two."""
    from pytorch_grad_cam import EigenGradCAM

    model, x, classes = r18_case
    mine = camkit_raw(model, x, "eigengradcam", classes)
    theirs = peer_maps(EigenGradCAM, model, "layer4", x, classes)
    for i in range(4):
        diffs = [np.abs(pgc_pipeline(sign * mine[i : i + 1], size_of(x)) - theirs[i : i + 1]).max() for sign in (1, -1)]
        assert min(diffs) <= TOL, (i, diffs)
    # ... and the raw projection is get_2d_projection of (h*w) g o A with the sign rule applied.
    with model_state(model):
        a, logits = activations_and_logits(model, x, None, need_grad=True)
        (g,) = torch.autograd.grad(logits.gather(1, torch.tensor(classes)[:, None]).sum(), a)
    ref = get_2d_projection((16 * g * a).detach().numpy())
    for i in range(4):
        r = ref[i] if abs(ref[i].min()) <= abs(ref[i].max()) else -ref[i]
        assert np.abs(mine[i] - r).max() <= 1e-4 * np.abs(r).max()


class SmoothNet(nn.Module):
    """SiLU after the target layer ("body.2"): a smooth network, so the Hessian term of ShapleyCAM is not zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1),
                                  nn.SiLU(), nn.Conv2d(12, 10, 3, padding=1), nn.SiLU())
        self.fc = nn.Linear(10, 6)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=(2, 3)))


def test_shapleycam_differs_from_gradcam_only_through_the_hessian():
    """SiLU after the target layer (H != 0): ShapleyCAM matches pytorch-grad-cam and is not Grad-CAM."""
    from pytorch_grad_cam import ShapleyCAM

    model = SmoothNet().eval()
    torch.manual_seed(0)
    x = torch.randn(3, 3, 16, 16)
    classes = [0, 3, 5]
    mine = camkit_raw(model, x, "shapleycam", classes, layer="body.2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ShapleyCAM(model=model, target_layers=[model.body[2]]) as peer:
            theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    assert np.abs(pgc_pipeline(mine, size_of(x)) - theirs).max() <= TOL
    grad = camkit_raw(model, x, "gradcam", classes, layer="body.2")
    assert np.abs(pgc_pipeline(grad, size_of(x)) - theirs).max() > 10 * TOL
    # Two classes at once give each class's own map.
    both = compute_method_maps(model, x, "shapleycam", classes=[[c, 1] for c in classes], layer="body.2").maps[:, 0].numpy()
    assert np.allclose(both, mine, rtol=1e-5, atol=1e-6 * np.abs(mine).max())


def test_shapleycam_is_gradcam_on_a_piecewise_linear_head(r18_case):
    model, x, classes = r18_case
    assert np.allclose(camkit_raw(model, x, "shapleycam", classes), camkit_raw(model, x, "gradcam", classes), rtol=1e-5, atol=1e-5)


def test_randomcam_formula_matches_pytorch_grad_cam_with_its_weights(r18_case):
    """pytorch-grad-cam draws np.random.uniform(-1, 1, (B, K)) from numpy's global state; with the same weights the maps agree."""
    from pytorch_grad_cam import RandomCAM

    from camkit.cam.methods.randomcam import randomcam_maps

    model, x, classes = r18_case
    np.random.seed(5)
    theirs = peer_maps(RandomCAM, model, "layer4", x, classes)
    w = torch.from_numpy(np.random.RandomState(5).uniform(-1, 1, size=(4, 512))).float()[:, None, :]
    with model_state(model), torch.no_grad():
        a, _ = activations_and_logits(model, x, None, need_grad=False)
    mine = randomcam_maps(a, w)[:, 0].numpy()
    assert np.abs(pgc_pipeline(mine, size_of(x)) - theirs).max() <= TOL


# ---------------------------------------------------------------- Ablation-CAM


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


def ablation_by_loop(model, x, layer, cls):
    """Eq. 2 one channel and one image at a time: zero channel k at the layer, re-run the whole network."""
    store = {}
    mod = model.get_submodule(layer)
    h = mod.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        y = model(x)
    h.remove()
    a = store["a"]
    out = []
    for b in range(x.shape[0]):
        w = []
        for k in range(a.shape[1]):
            abl = a[b : b + 1].clone()
            abl[:, k] = 0
            h = mod.register_forward_hook(lambda m, i, o, abl=abl: abl)
            with torch.no_grad():
                yk = model(x[b : b + 1])[0, cls[b]]
            h.remove()
            w.append((y[b, cls[b]] - yk) / y[b, cls[b]])
        out.append(torch.einsum("k,khw->hw", torch.stack(w), a[b]))
    return torch.stack(out)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_ablationcam_equals_the_papers_loop_and_skips_dead_channels(batch_size):
    m = TinyCNN().eval()
    with torch.no_grad():
        m.conv2.weight[0] = 0.0
        m.conv2.bias[0] = -1.0  # channel 0 of relu2 is zero everywhere: its ablation changes nothing
    torch.manual_seed(0)
    x = torch.randn(3, 3, 12, 12)
    cls = [0, 3, 4]
    rows = []
    h = m.fc.register_forward_hook(lambda mod, i, o: rows.append(o.shape[0]))
    try:
        got = compute_method_maps(m, x, "ablationcam", classes=[[c] for c in cls], layer="relu2", batch_size=batch_size).maps[:, 0]
    finally:
        h.remove()
    assert torch.allclose(got, ablation_by_loop(m, x, "relu2", cls), rtol=1e-4, atol=1e-6)
    # Rows through the head: the layer check (1 image), the reference forward (3), a 1-image call count (1),
    # one check row, and 5 live channels per image (channel 0 skipped): 1 + 3 + 1 + 1 + 15.
    assert sum(rows) == 1 + 3 + 1 + 1 + 15


@pytest.mark.slow
def test_ablationcam_modes_agree_and_match_pytorch_grad_cam():
    """resnet18 (random, 64 px): the CAMModel head path and the hooked layer4 against pytorch-grad-cam's AblationCAM
    (a layer ending in a ReLU: minimum 0, where it follows the paper), the block's shared ReLU (last call); a
    layer before a residual addition needs the real image upstream (single mode), and equals the all-copies mode."""
    import pytorch_grad_cam.ablation_cam as ac
    from pytorch_grad_cam import AblationCAM

    from camkit.cam.methods import ablation

    ac.tqdm.tqdm = lambda it, *a, **k: it
    torch.manual_seed(0)
    model = load_model("resnet18", weights="random")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    modes = []
    orig = ablation._first_mode
    ablation._first_mode = lambda *a: (lambda r: (modes.append(r[0]), r)[1])(orig(*a))
    try:
        head = camkit_raw(model, x, "ablationcam", classes)
        hooked = camkit_raw(model, x, "ablationcam", classes, layer="layer4")
        inner = camkit_raw(model, x, "ablationcam", classes, layer="layer4.1.relu")
        before_add = camkit_raw(model, x, "ablationcam", classes, layer="layer4.1.bn2")
        modes_all = ablation.MODES
        ablation.MODES = ("copies",)
        try:
            before_add_copies = camkit_raw(model, x, "ablationcam", classes, layer="layer4.1.bn2")
        finally:
            ablation.MODES = modes_all
    finally:
        ablation._first_mode = orig
    assert modes == ["thumbnail", "thumbnail", "thumbnail", "single", "copies"]  # the head path ignores the mode
    # (weights are differences of nearby logits: float32 cancellation, hence 1e-4 of the map scale)
    assert np.allclose(before_add, before_add_copies, rtol=1e-4, atol=1e-4 * np.abs(before_add).max())
    assert np.allclose(head, hooked, rtol=1e-4, atol=1e-5 * np.abs(head).max())
    theirs = peer_maps(AblationCAM, model, "layer4", x, classes)
    assert np.abs(pgc_pipeline(head, size_of(x)) - theirs).max() <= TOL
    # The block's ReLU runs twice; its last call is the block's output, i.e. layer4's output: the same maps.
    # (pytorch-grad-cam swaps the module itself, so both calls would be replaced: not comparable there.)
    assert np.allclose(inner, hooked, rtol=1e-4, atol=1e-5 * np.abs(head).max())


# ---------------------------------------------------------------- FullGrad


def test_fullgrad_terms_are_complete_on_a_relu_network():
    """Eq. 2 of the paper: for a piecewise-linear network the input-gradient and bias-gradient terms sum to the
    output (plus the last linear layer's bias, which is not a conv/norm): a check that every bias layer is found."""
    from camkit.cam.methods.fullgrad import fullgrad_terms

    torch.manual_seed(0)
    model = load_model("resnet18", weights="random")
    with torch.no_grad():  # non-trivial BN statistics, so every effective bias is non-zero
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 64, 64)
    with model_state(model):
        idx, s, logits, terms = fullgrad_terms(model, x, 2)
    assert len(terms[0]) == 1 + 20  # input + resnet18's 20 BatchNorm2d layers
    for j in range(2):
        total = sum(t.double().sum(dim=(1, 2, 3)) for t in terms[j]) + model.net.fc.bias[idx[:, j]].double()
        assert torch.allclose(total, logits.gather(1, idx[:, j : j + 1])[:, 0].double(), rtol=1e-4, atol=1e-4)


def test_fullgrad_fused_norms_equal_separate_norm_and_activation():
    """camkit's BatchNormAct2d (BN then ReLU6 in one module, its BN output unhookable) gives the same FullGrad terms as
    the same network written with a separate nn.BatchNorm2d and nn.ReLU6: dS/dz = dS/du / s is exact."""
    from camkit.cam.methods.fullgrad import fullgrad_terms
    from camkit.models.efficientnet_lite import BatchNormAct2d

    torch.manual_seed(0)
    fused = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), BatchNormAct2d(6), nn.Conv2d(6, 4, 3, padding=1),
                          BatchNormAct2d(4, act=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 4.0)
                m.bias.uniform_(-1.0, 1.0)
    plain = nn.Sequential(fused[0], nn.BatchNorm2d(6, eps=fused[1].eps), nn.ReLU6(), fused[2], nn.BatchNorm2d(4, eps=fused[3].eps),
                          fused[4], fused[5], fused[6])
    plain[1].load_state_dict(fused[1].state_dict())
    plain[4].load_state_dict(fused[3].state_dict())
    fused.eval(), plain.eval()
    x = torch.randn(2, 3, 10, 10)
    with model_state(fused), model_state(plain):
        _, _, lf, tf = fullgrad_terms(fused, x, 2)
        _, _, lp, tp = fullgrad_terms(plain, x, 2)
    assert torch.allclose(lf, lp, atol=1e-6) and len(tf[0]) == len(tp[0]) == 4  # input, 2 BN, 1 conv bias
    for col_f, col_p in zip(tf, tp, strict=True):
        for a, b in zip(col_f, col_p, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_fullgrad_matches_pytorch_grad_cam(r18_case):
    """With pytorch-grad-cam's epsilon (1e-7 added to each channel's range) the maps agree to 1e-4; camkit's default
    (no epsilon) differs from it by the measured amount printed."""
    from pytorch_grad_cam import FullGrad

    from camkit.cam.methods.fullgrad import bias_layers, fullgrad_maps

    model, x, classes = r18_case
    x = x[:2, :, :64, :64]
    classes = classes[:2]
    with model_state(model):
        _, _, _, like_peer = fullgrad_maps(model, x, [[c] for c in classes], eps=1e-7, fused_norms=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = FullGrad(model=model.net, target_layers=[])
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
        peer.activations_and_grads.release()
    assert np.abs(scale_cam_image(like_peer[:, 0].numpy()) - theirs).max() <= TOL
    mine = compute_method_maps(model, x, "fullgrad", classes=[[c] for c in classes])
    assert mine.maps.shape == (2, 1, 64, 64) and mine.layer == "input"
    assert mine.maps.amin(dim=(2, 3)).abs().max() == 0  # the floor removed: relu_max and minmax normalisations agree
    print(f"FullGrad default vs pytorch-grad-cam: {np.abs(scale_cam_image(mine.maps[:, 0].numpy()) - theirs).max():.2e}")
    with pytest.raises(Exception, match="layer= does not apply"):
        compute_method_maps(model, x, "fullgrad", classes=1, layer="layer4")
    # Fused BN + activation (BatchNormAct2d) count as bias layers; pytorch-grad-cam's exact-type rule skips them.
    lite = load_model("efficientnet_lite0")
    assert len(bias_layers(lite)) == 49 and len(bias_layers(lite, fused_norms=False)) == 0


# ---------------------------------------------------------------- Guided Backprop, Guided Grad-CAM


def test_guided_backprop_matches_pytorch_grad_cam_and_leaves_the_model_alone(r18_case):
    import copy

    from pytorch_grad_cam import GuidedBackpropReLUModel

    from camkit.cam.methods.guided import guided_gradients

    model, x, classes = r18_case
    x = x[:2, :, :64, :64]
    classes = classes[:2]
    relus_before = [(n, type(m), getattr(m, "inplace", None)) for n, m in model.named_modules()]
    r = compute_method_maps(model, x, "guidedbackprop", classes=[[c] for c in classes])
    assert [(n, type(m), getattr(m, "inplace", None)) for n, m in model.named_modules()] == relus_before
    with model_state(model):
        _, _, _, g = guided_gradients(model, x, [[c] for c in classes])
    assert torch.equal(r.maps, g.abs().amax(dim=2))
    for i in range(2):
        peer = GuidedBackpropReLUModel(copy.deepcopy(model.net), device="cpu")
        theirs = peer(x[i : i + 1], target_category=classes[i])
        mine = g[i, 0].permute(1, 2, 0).numpy()
        assert np.abs(mine - theirs).max() <= 1e-5 * np.abs(theirs).max()
    # Guided Backprop is not the plain gradient (negative gradients are stopped at every ReLU).
    xin = x[:1].clone().requires_grad_(True)
    with model_state(model):
        (plain,) = torch.autograd.grad(model(xin)[0, classes[0]], xin)
    assert not torch.allclose(plain[0], g[0, 0], atol=1e-3 * float(plain.abs().max()))


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(r18_case):
    from camkit.cam.engine import upsample

    model, x, classes = r18_case
    x = x[:2, :, :64, :64]
    spec = [[c] for c in classes[:2]]
    gg = compute_method_maps(model, x, "guidedgradcam", classes=spec)
    gb = compute_method_maps(model, x, "guidedbackprop", classes=spec).maps
    gc = compute_method_maps(model, x, "gradcam", classes=spec).maps
    assert gg.layer == "features"
    assert torch.allclose(gg.maps, gb * upsample(gc.clamp_min(0), (64, 64), "bilinear"), rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- Finer-CAM, RefineCAM


def test_finercam_matches_pytorch_grad_cam(r18_case):
    from pytorch_grad_cam import FinerCAM

    from camkit.cam.methods.finercam import comparison_classes, finer_scores

    model, x, _ = r18_case
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    mine = camkit_raw(model, x, "finercam", top)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = FinerCAM(model.net, [model.net.layer4])
        theirs = peer(x, targets=None)
    assert np.abs(pgc_pipeline(mine, size_of(x)) - theirs).max() <= TOL
    # alpha = 0: the explained score is the plain logit.
    lg = torch.randn(3, 10)
    idx = torch.tensor([[2], [5], [9]])
    assert torch.allclose(finer_scores(lg, idx, comparison_classes(lg, idx), alpha=0.0), lg.gather(1, idx))
    # The comparison classes are the three nearest logits.
    lg = torch.tensor([[0.0, 1.0, 5.0, 4.5, 3.0, 9.0]])
    assert comparison_classes(lg, torch.tensor([[2]])).tolist() == [[[3, 4, 1]]]


class Scaled(nn.Module):
    """``factor * net(x)``: makes pytorch-grad-cam's Grad-CAM++ epsilon negligible (see tests/test_method_parity.py)."""

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        return self.factor * self.net(x)


def test_refinecam_matches_pytorch_grad_cam_on_scaled_logits(r18_case):
    from pytorch_grad_cam import RefineCAM

    from camkit.cam.methods.refinecam import stage_ends

    model, x, classes = r18_case
    assert stage_ends(model, x) == ["layer2", "layer3", "layer4"]
    net = Scaled(model.net, 1e4)
    with model_state(net):
        r = compute_method_maps(net, x, "refinecam", classes=[[c] for c in classes], layer=["net.layer2", "net.layer3", "net.layer4"])
    assert r.maps.shape == (4, 1, 112, 112) and r.layer == "net.layer2+net.layer3+net.layer4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = RefineCAM(net, [model.net.layer2, model.net.layer3, model.net.layer4])
        theirs = peer(x, targets=[ClassifierOutputTarget(c) for c in classes])
    assert np.abs(scale_cam_image(r.maps[:, 0].numpy()) - theirs).max() <= TOL
    # One layer: RefineCAM is that layer's normalised, upsampled Grad-CAM++.
    from camkit.cam.methods.refinecam import normalized_up

    one = compute_method_maps(model, x, "refinecam", classes=[[c] for c in classes], layer="layer4").maps
    gpp = compute_method_maps(model, x, "gradcam++", classes=[[c] for c in classes], layer="layer4").maps
    assert torch.allclose(one, normalized_up(gpp, (112, 112)), atol=1e-6)


# ---------------------------------------------------------------- Sobel, DFF, SESS


def test_sobel_matches_pytorch_grad_cam_after_its_uint8_rounding(lite0, chelsea_x):
    import cv2
    from pytorch_grad_cam.sobel_cam import sobel_cam

    from camkit.cam.methods.sobel import rgb255, sobel_magnitude

    rgb = rgb255(lite0, chelsea_x)[0].permute(1, 2, 0).numpy()
    u8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    theirs = sobel_cam(u8).astype(np.float64)
    gray = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
    mine_on_gray = sobel_magnitude(torch.from_numpy(gray.astype(np.float32))[None])[0].numpy()
    gx = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
    assert np.abs(mine_on_gray - (0.5 * np.abs(gx) + 0.5 * np.abs(gy))).max() <= 1e-3
    # pytorch-grad-cam's quirk: each |gradient| rounded and saturated to 0..255, then the sum rounded.
    quirk = np.round(0.5 * np.clip(np.round(np.abs(gx)), 0, 255) + 0.5 * np.clip(np.round(np.abs(gy)), 0, 255))
    assert np.array_equal(quirk, theirs)
    r = compute_method_maps(lite0, chelsea_x, "sobelcam", classes=2)
    assert r.maps.shape == (1, 2, 224, 224) and torch.equal(r.maps[0, 0], r.maps[0, 1])
    ours_gray = torch.einsum("c,chw->hw", torch.tensor([0.299, 0.587, 0.114]), rgb255(lite0, chelsea_x)[0])
    assert torch.allclose(r.maps[0, 0], sobel_magnitude(ours_gray[None])[0])


def test_dff_updates_equal_scikit_learn_multiplicative_updates(lite0, chelsea_x):
    sklearn_nmf = pytest.importorskip("sklearn.decomposition").NMF
    from camkit.cam.methods.dff import dff, nmf, random_init

    torch.manual_seed(0)
    v = torch.rand(20, 30, dtype=torch.float64)
    w0, h0 = random_init(v, 4)
    w, h, it = nmf(v, w0, h0)
    ref = sklearn_nmf(n_components=4, init="custom", solver="mu", max_iter=200, tol=1e-4)
    with warnings.catch_warnings():  # both may stop at the 200-iteration cap: sklearn warns, the test compares
        warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning is a UserWarning
        wr = ref.fit_transform(v.numpy(), W=w0.numpy().copy(), H=h0.numpy().copy())
    assert it == ref.n_iter_
    assert np.abs(wr - w.numpy()).max() <= 1e-10 and np.abs(ref.components_ - h.numpy()).max() <= 1e-10
    # On the photo: the tabby's map is the heatmap of the concept the classifier scores highest for 'tabby'.
    r = compute_method_maps(lite0, chelsea_x, "dff", classes=[281])
    with model_state(lite0), torch.no_grad():
        a, _ = activations_and_logits(lite0, chelsea_x, None, need_grad=False)
    concepts, heat = dff(a, 5)
    best = int(lite0.head(concepts[0].T.reshape(5, -1, 1, 1).float())[:, 281].argmax())
    assert torch.allclose(r.maps[0, 0], heat[0, best].float())
    with pytest.raises(Exception, match="pool\\+linear"):
        compute_method_maps(TinyCNN(), torch.randn(1, 3, 8, 8), "dff", classes=1)


def test_sess_matches_pytorch_grad_cam():
    from pytorch_grad_cam import SESS, GradCAM

    from camkit.cam.methods.sess import sess_map

    torch.manual_seed(0)
    model = load_model("resnet18", weights="random")
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        c = int(model(x).argmax())
    with model_state(model):
        mine = sess_map(model, x, c, "net.layer4", 32, num_scales=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = SESS(model.net, [model.net.layer4], base_method=GradCAM, num_scales=4)
        theirs = peer(x, [ClassifierOutputTarget(c)])
    assert np.abs(scale_cam_image(mine[None]) - theirs).max() <= TOL


# ---------------------------------------------------------------- token layers, default method


class TinyViT(nn.Module):
    """Patch embedding -> tokens [B, 1 + h*w, C] with a class token -> one MLP block -> head on the mean token."""

    def __init__(self, with_reshape: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.block = nn.Sequential(nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 5)
        if with_reshape:
            self.reshape_activations = tokens_to_map

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)
        t = self.block(t)
        return self.head(t.mean(dim=1))


def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
    b, n, c = t.shape
    s = int(math.isqrt(n - 1))
    return t[:, 1:].transpose(1, 2).reshape(b, c, s, s)


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_reshape_activations_seam_matches_pytorch_grad_cam_reshape_transform(method):
    from pytorch_grad_cam import GradCAM, LayerCAM

    model = TinyViT(with_reshape=True).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    classes = [1, 4]
    r = compute_method_maps(model, x, method, classes=[[c] for c in classes], layer="block")
    assert r.maps.shape == (2, 1, 4, 4)
    peer_cls = {"gradcam": GradCAM, "layercam": LayerCAM}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with peer_cls(model=model, target_layers=[model.block], reshape_transform=tokens_to_map) as peer:
            theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    assert np.abs(pgc_pipeline(r.maps[:, 0].numpy(), size_of(x)) - theirs).max() <= TOL
    # The automatic layer finds the token layer through the reshape; without it there is no map layer.
    assert compute_method_maps(model, x, method, classes=1).layer == "block"
    with pytest.raises(Exception, match="no 4-D output"):
        compute_method_maps(TinyViT(with_reshape=False), x, method, classes=1, layer="block")


def test_reshape_seam_second_derivatives_for_shapleycam():
    """ShapleyCAM through the seam (at the block's Linear, GELU after it) equals the token-space computation
    R(g - H R^T(A) / 2) (pytorch-grad-cam's
    ShapleyCAM cannot take a reshape_transform: with detach=False it never reshapes the activations)."""
    model = TinyViT(with_reshape=True).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    got = compute_method_maps(model, x, "shapleycam", classes=[[1], [4]], layer="block.0").maps[:, 0]
    store = {}

    def hook(_m, _i, out):
        store["t"] = out
        return None

    h = model.block[0].register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        h.remove()
    t = store["t"]
    s = logits[0, 1] + logits[1, 4]
    (g,) = torch.autograd.grad(s, t, create_graph=True)
    a = tokens_to_map(t.detach())
    v = torch.zeros_like(t)
    v[:, 1:] = a.flatten(2).transpose(1, 2)  # R^T(A): the map back in token positions, 0 at the class token
    (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
    w = tokens_to_map((g - 0.5 * hv).detach()).sum(dim=(2, 3))
    ref = torch.einsum("bk,bkhw->bhw", w, a)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    assert not torch.allclose(got, compute_method_maps(model, x, "gradcam", classes=[[1], [4]], layer="block.0").maps[:, 0], rtol=1e-3)


def test_default_method_is_one_rule():
    from camkit.cam.methods import default_method
    from camkit.models.classifier_model import ClassifierModel

    torch.manual_seed(0)
    exact = load_model("resnet18", weights="random")
    assert default_method(exact) == "cam" and default_method(exact, "features") == "cam"
    assert default_method(exact, "layer3") == "gradcam"
    exact.cam_kind = "needs-finetune"  # a GAP surgery before fine-tuning: CAM still applies to its head
    assert default_method(exact) == "cam"
    assert default_method(ClassifierModel(TinyCNN(), default_layer="relu2", name="tiny")) == "gradcam"
    assert default_method(TinyCNN()) == "gradcam"
