"""Smoothing (``smooth="aug"`` / ``"eigen"``) and several target layers, against pytorch-grad-cam 1.5.7 and
torch-cam 0.5.0, plus exactness checks of camkit's mapping back to the original frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pgc = pytest.importorskip("pytorch_grad_cam")
tta = pytest.importorskip("ttach")
torchcam_methods = pytest.importorskip("torchcam.methods")

from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction  # noqa: E402

from camkit.cam.methods import compute_method_maps  # noqa: E402
from camkit.cam.methods.smoothing import augmented_maps  # noqa: E402
from camkit.errors import ParameterError  # noqa: E402
from camkit.models.cam_model import CAMModel  # noqa: E402

TOL = 1e-4
PGC = {"gradcam": GradCAM, "xgradcam": XGradCAM, "layercam": LayerCAM, "hirescam": HiResCAM}


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(20, 12)
        self.fc2 = nn.Linear(12, classes)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(self.pool(x).flatten(1))))


class FlipEquivariant(nn.Module):
    """Kernels symmetric left-right and a stride-2, 2x2 patchify: features of flip(x) are flip(features of x)
    at every even input width (the layer "relu2" is at half resolution); GAP + linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv1 = nn.Conv2d(3, 6, 2, stride=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(5, 4)
        with torch.no_grad():
            for c in (self.conv1, self.conv2):
                c.weight.copy_((c.weight + c.weight.flip(-1)) / 2)

    def forward(self, x):
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))


class Scaled(nn.Module):
    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        return self.factor * self.net(x)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = TinyCNN().eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return m, x, [1, 3, 4]


def pgc_pipeline(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return scale_cam_image(np.maximum(scale_cam_image(np.maximum(raw, 0), size), 0))


def minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(dim=(-2, -1), keepdim=True)
    return (m - lo) / (m.amax(dim=(-2, -1), keepdim=True) - lo).clamp_min(1e-12)


# ---------------------------------------------------------------- eigen


@pytest.mark.parametrize("method", list(PGC))
def test_eigen_smooth_matches_pytorch_grad_cam(tiny, method):
    m, x, cls = tiny
    mine = compute_method_maps(m, x, method, [[c] for c in cls], layer="relu2", smooth="eigen").maps[:, 0].numpy()
    with PGC[method](model=m, target_layers=[m.relu2]) as peer:
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in cls], eigen_smooth=True)
    for i in range(len(cls)):  # pytorch-grad-cam keeps LAPACK's sign, camkit fixes it
        diffs = [np.abs(pgc_pipeline(sign * mine[i : i + 1], (16, 16)) - theirs[i : i + 1]).max() for sign in (1, -1)]
        assert min(diffs) <= TOL, f"{method} image {i}: {diffs}"


def test_eigen_smooth_of_cam_and_scorecam_is_the_projection_of_weighted_activations():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    model = CAMModel(net, lambda n, x: n[1](n[0](x)), "4", name="tiny").eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    r = compute_method_maps(model, x, "cam", [[1], [2]], smooth="eigen")
    with torch.no_grad():
        f = net[1](net[0](x))
        w = net[4].weight[torch.tensor([1, 2])]  # [B, K]
        weighted = (w[:, :, None, None] * f).numpy()
    ref = get_2d_projection_with_sign_correction(weighted)
    assert np.abs(r.maps[:, 0].numpy() - ref).max() <= 1e-5 * np.abs(ref).max()
    # Score-CAM: alpha_k A_k, alpha from the plain Score-CAM run
    from camkit.cam.methods.base import activations_and_logits, model_state
    from camkit.cam.methods.scorecam import scorecam_weights

    s = compute_method_maps(model, x, "scorecam", [[1], [2]], layer="1", smooth="eigen").maps[:, 0]
    with model_state(model), torch.inference_mode():
        a, _ = activations_and_logits(model, x, "net.1", need_grad=False)
        idx = torch.tensor([[1], [2]])
        alpha = scorecam_weights(model, x, a, lambda lg, smp: lg.gather(1, idx[smp]))
    ref = get_2d_projection_with_sign_correction((alpha[:, :, 0, None, None] * a).numpy())
    assert np.abs(s.numpy() - ref).max() <= 1e-5 * np.abs(ref).max()


# ---------------------------------------------------------------- aug


def test_aug_smooth_flips_match_pytorch_grad_cam():
    """A stride-1 network (maps at the input's resolution, so both pipelines normalise at the same grid):
    pytorch-grad-cam's aug_smooth with flips only = the mean of camkit's per-copy maps, each normalised
    pytorch-grad-cam's way."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 5, padding=2), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    cls = [0, 3]
    _, per_copy = augmented_maps(compute_method_maps, m, x, "gradcam", [[c] for c in cls], "3", 32, 0, scales=(1.0,))
    ours = np.mean([pgc_pipeline(p[:, 0].numpy(), (12, 12)) for p in per_copy], axis=0)
    with GradCAM(model=m, target_layers=[m[3]]) as peer:
        peer.tta_transforms = tta.Compose([tta.HorizontalFlip()])  # flips only (its default also multiplies intensities)
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in cls], aug_smooth=True)
    assert np.abs(ours - theirs).max() <= TOL
    # the flipped copy really differs here (the network is not flip-equivariant): the test can fail
    assert (per_copy[0] - per_copy[1]).abs().max() > 1e-3


def test_aug_maps_come_back_exactly_for_a_flip_equivariant_model():
    m = FlipEquivariant().eval()
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(5))
    base, per_copy = augmented_maps(compute_method_maps, m, x, "gradcam", [[1], [2]], "relu2", 32, 0)
    assert len(per_copy) == 6 and base.maps.shape[-2:] == (10, 10)
    for s in range(3):  # scales 0.9, 1.0, 1.1: each flipped copy maps back onto its unflipped twin
        plain, flipped = per_copy[2 * s], per_copy[2 * s + 1]
        assert plain.shape == (2, 1, 20, 20)
        assert torch.allclose(plain, flipped, rtol=1e-5, atol=1e-6 * float(plain.abs().max())), s
    smoothed = compute_method_maps(m, x, "gradcam", [[1], [2]], layer="relu2", smooth="aug").maps
    assert torch.allclose(smoothed, torch.stack(per_copy).mean(0), rtol=1e-6, atol=1e-7)


def test_aug_scales_keep_an_object_where_it_is():
    """The layer is the input itself: each copy's map is the (resized) image; mapped back and averaged, an
    off-centre blob keeps its centroid to a tenth of a pixel."""

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.feat = nn.Identity()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.feat(x).mean(dim=(2, 3)))

    m = Probe().eval()
    with torch.no_grad():
        m.fc.weight.fill_(1.0)
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    blob = torch.exp(-((xx - 11.0) ** 2 + (yy - 26.0) ** 2) / (2 * 3.0**2))
    x = blob.expand(1, 3, 40, 40).contiguous()
    r = compute_method_maps(m, x, "gradcam", [[0]], layer="feat", smooth="aug").maps[0, 0]

    def centroid(a):
        return float((a * xx).sum() / a.sum()), float((a * yy).sum() / a.sum())

    cx, cy = centroid(r)
    assert abs(cx - 11.0) < 0.1 and abs(cy - 26.0) < 0.1, (cx, cy)


# ---------------------------------------------------------------- several layers


def test_two_layers_match_pytorch_grad_cam(tiny):
    """pytorch-grad-cam divides each layer's map by (1e-7 + max): on this tiny network's small gradients
    that shrinks the layers unequally (measured 2.6e-4 on the fused map), so the logits are scaled by 1e4
    (which leaves every normalised map unchanged) to make its epsilon irrelevant."""
    m, x, cls = tiny
    scaled = Scaled(m, 1e4).eval()
    r = compute_method_maps(scaled, x, "gradcam", [[c] for c in cls], layer=["relu1", "relu2"])
    assert r.maps.shape == (3, 1, 16, 16) and r.layer == "relu1+relu2"
    with GradCAM(model=scaled, target_layers=[m.relu1, m.relu2]) as peer:
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in cls])
    assert (minmax(r.maps[:, 0]) - torch.from_numpy(theirs)).abs().max() <= TOL


def test_layercam_layers_fuse_as_the_paper_and_torchcam(tiny):
    m, x, cls = tiny
    r = compute_method_maps(m, x, "layercam", [[c] for c in cls], layer=["relu1", "relu2"])
    ext = torchcam_methods.LayerCAM(m, ["relu1", "relu2"])
    try:
        cams = ext(cls, m(x))
        theirs = ext.fuse_cams([c.detach() for c in cams], target_shape=(16, 16))
    finally:
        ext.remove_hooks()
    single = [compute_method_maps(m, x, "layercam", [[c] for c in cls], layer=lay).maps[:, 0] for lay in ("relu1", "relu2")]
    assert all(float(s.clamp_min(0).amin(dim=(-2, -1)).max()) == 0.0 for s in single)  # where torch-cam's tanh = the paper's
    assert (r.maps[:, 0] - theirs).abs().max() <= TOL


def test_layers_with_smoothing_and_errors(tiny):
    m, x, cls = tiny
    r = compute_method_maps(m, x, "gradcam", [[c] for c in cls], layer=["relu1", "relu2"], smooth="eigen")
    assert r.maps.shape == (3, 1, 16, 16) and float(r.maps.min()) >= 0 and float(r.maps.max()) <= 1
    with pytest.raises(ParameterError, match="smooth='blur' is not a smoothing"):
        compute_method_maps(m, x, "gradcam", 1, layer="relu2", smooth="blur")
    with pytest.raises(ParameterError, match="smooth='eigen' does not apply to eigengradcam"):
        compute_method_maps(m, x, "eigengradcam", 1, layer="relu2", smooth="eigen")
    with pytest.raises(ParameterError, match="layer=\\[\\] names no layer"):
        compute_method_maps(m, x, "gradcam", 1, layer=[])
