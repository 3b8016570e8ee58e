"""torch-cam's catalogue in camkit: Smooth Grad-CAM++, SS-CAM, IS-CAM, LeGrad (parity with torch-cam 0.5.0).

The random methods are compared with the *same noise*: torch-cam draws from torch's global generator,
which the tests seed and replay into camkit's ``noise=`` hook. Where torch-cam departs from the paper
(Smooth Grad-CAM++'s last-copy gradient and activations; LeGrad's mean-token score), the test
reproduces torch-cam's number from the documented formula and checks camkit's paper version against
an independent loop.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

torchcam_methods = pytest.importorskip("torchcam.methods")
timm = pytest.importorskip("timm")

from camkit.cam.methods import METHODS, compute_method_maps  # noqa: E402
from camkit.cam.methods.base import activations_and_logits, method_info, model_state  # noqa: E402
from camkit.cam.methods.iscam import iscam_coefficients, iscam_weights  # noqa: E402
from camkit.cam.methods.legrad import block_names  # noqa: E402
from camkit.cam.methods.smoothgradcampp import smoothgradcampp_from_moments, smoothgradcampp_maps  # noqa: E402
from camkit.cam.methods.sscam import sscam_maps, sscam_weights  # noqa: E402

TOL = 1e-4


class TinyCNN(nn.Module):
    """conv-relu-conv(stride 2)-relu -> 2x2 pool -> MLP: a head that is not pool+linear (layer "relu2")."""

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


def minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(dim=(-2, -1), keepdim=True)
    return (m - lo) / (m.amax(dim=(-2, -1), keepdim=True) - lo).clamp_min(1e-12)


def selector(cls):
    idx = torch.tensor(cls)[:, None]
    return lambda logits, sample: logits.gather(1, idx[sample])


# ---------------------------------------------------------------- the catalogue


def test_every_torchcam_method_is_in_the_catalogue():
    exported = {n for n in dir(torchcam_methods) if isinstance(getattr(torchcam_methods, n), type) and n != "OutputTarget"}
    ours = {"CAM": "cam", "GradCAM": "gradcam", "GradCAMpp": "gradcam++", "SmoothGradCAMpp": "smoothgradcam++",
            "XGradCAM": "xgradcam", "LayerCAM": "layercam", "ScoreCAM": "scorecam", "SSCAM": "sscam", "ISCAM": "iscam",
            "LeGrad": "legrad", "FinerCAM": "finercam", "RefineCAM": "refinecam"}
    assert exported <= set(ours), f"torch-cam exports {sorted(exported - set(ours))} with no camkit entry"
    for cls in exported:
        assert ours[cls] in METHODS, cls
    for name in ("smoothgradcam++", "sscam", "iscam", "legrad"):
        info = METHODS[name]
        assert "arXiv" in info.paper and info.title
    assert METHODS["smoothgradcam++"].needs_gradients and METHODS["legrad"].needs_gradients
    assert not METHODS["sscam"].needs_gradients and not METHODS["iscam"].needs_gradients
    assert method_info("Smooth-Grad-CAM++").name == method_info("smoothgradcampp").name == "smoothgradcam++"


# ---------------------------------------------------------------- Smooth Grad-CAM++


def test_smoothgradcampp_without_noise_is_gradcampp(tiny):
    m, x, cls = tiny
    with model_state(m):
        a, _ = activations_and_logits(m, x, "relu2", need_grad=False)
        mine = smoothgradcampp_maps(m, x, "relu2", a, selector(cls), 1, num_samples=3, std=0.0, batch_size=4)
    ref = compute_method_maps(m, x, "gradcam++", [[c] for c in cls], layer="relu2").maps
    assert torch.allclose(mine, ref, rtol=1e-5, atol=1e-6 * ref.abs().max())


def test_smoothgradcampp_torchcam_with_the_noise_off_is_its_documented_formula():
    """torch-cam cannot take std=0; std=1e-30 leaves float32 inputs unchanged, so every copy is the clean
    image. Its denominator is 2 g^2 + sum_ab(A g^3) (the sum taken over the product), not Grad-CAM++'s
    2 g^2 + sum_ab(A) g^3 (which camkit's Smooth Grad-CAM++ reduces to: previous test)."""
    torch.manual_seed(0)
    net = Scaled(TinyCNN().eval(), 1e4).eval()  # logits x 1e4: its eps=1e-8 becomes irrelevant
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cls = [0, 2, 4]
    ext = torchcam_methods.SmoothGradCAMpp(net, "net.relu2", num_samples=2, std=1e-30)
    try:
        theirs = ext(cls, net(x), normalized=False)[0].detach()
    finally:
        ext.remove_hooks()
    with model_state(net):
        a, logits = activations_and_logits(net, x, "net.relu2", need_grad=True)
        (g,) = torch.autograd.grad(logits.gather(1, torch.tensor(cls)[:, None]).sum(), a)
    a, g = a.detach().double(), g.double()
    alpha = g**2 / (2 * g**2 + (g**3 * a).sum(dim=(2, 3), keepdim=True) + 1e-8)
    w = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
    formula = torch.einsum("bk,bkhw->bhw", w, a).clamp_min(0).float()
    assert (formula - theirs).abs().max() <= TOL * theirs.abs().max()
    paper = compute_method_maps(net, x, "smoothgradcam++", [[c] for c in cls], layer="net.relu2").maps[:, 0]
    print(f"Smooth Grad-CAM++ without noise, paper vs torch-cam: {(minmax(paper.clamp_min(0)) - minmax(theirs)).abs().max():.3f}")


def test_smoothgradcampp_same_noise_as_torchcam(tiny):
    """Same noise in both: camkit equals an independent loop of the paper's formula; torch-cam equals the
    same formula with the last noisy copy's gradient and activations (its documented departure)."""
    m, x, cls = tiny
    n, std = 3, 0.3
    torch.manual_seed(7)
    noises = [torch.randn(x.shape) * std for _ in range(n)]
    ext = torchcam_methods.SmoothGradCAMpp(m, "relu2", num_samples=n, std=std)
    try:
        out = m(x)
        torch.manual_seed(7)
        theirs = ext(cls, out, normalized=False)[0].detach()
    finally:
        ext.remove_hooks()
    with model_state(m):
        a, _ = activations_and_logits(m, x, "relu2", need_grad=False)
        mine = smoothgradcampp_maps(m, x, "relu2", a, selector(cls), 1, num_samples=n, std=std, noise=lambda i: noises[i], batch_size=4)
        # independent loop: one noisy copy at a time, plain autograd on a hooked activation
        grads, acts = [], []
        for nz in noises:
            store = {}
            h = m.relu2.register_forward_hook(lambda _m, _i, o, store=store: store.__setitem__("a", o))
            with torch.enable_grad():
                xi = (x + nz).requires_grad_(True)
                s = m(xi).gather(1, torch.tensor(cls)[:, None]).sum()
                (g,) = torch.autograd.grad(s, store["a"])
            h.remove()
            grads.append(g.double())
            acts.append(store["a"].detach())
    d1 = sum(grads) / n
    d2 = sum(g**2 for g in grads) / n
    d3 = sum(g**3 for g in grads) / n
    paper = smoothgradcampp_from_moments(a, d1[:, None], d2[:, None], d3[:, None])
    assert torch.allclose(mine, paper, rtol=1e-5, atol=1e-7)
    # torch-cam: alpha from the clean A and the averaged moments, ReLU of the last gradient, last activations
    alpha = d2 / (2 * d2 + (d3 * a.double()).sum(dim=(2, 3), keepdim=True) + 1e-8)
    w = (alpha * grads[-1].clamp_min(0)).sum(dim=(2, 3))
    torchcam_formula = torch.einsum("bk,bkhw->bhw", w, acts[-1].double()).clamp_min(0).float()
    assert (torchcam_formula - theirs).abs().max() <= TOL * theirs.abs().max()
    paper_n = minmax(paper[:, 0].clamp_min(0))
    print(f"Smooth Grad-CAM++ paper vs torch-cam, max |diff| of min-max maps: {(paper_n - minmax(theirs)).abs().max():.3f}")


def test_smoothgradcampp_seeded_and_independent_of_the_batch(tiny):
    m, x, cls = tiny
    full = compute_method_maps(m, x, "smoothgradcam++", [[c] for c in cls], layer="relu2", seed=3, batch_size=2).maps
    again = compute_method_maps(m, x, "smoothgradcam++", [[c] for c in cls], layer="relu2", seed=3, batch_size=5).maps
    alone = compute_method_maps(m, x[1:2], "smoothgradcam++", [[cls[1]]], layer="relu2", seed=3).maps
    other = compute_method_maps(m, x, "smoothgradcam++", [[c] for c in cls], layer="relu2", seed=4).maps
    assert torch.allclose(full, again, rtol=1e-5, atol=1e-6) and torch.allclose(full[1:2], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(full, other)


# ---------------------------------------------------------------- SS-CAM and IS-CAM


@pytest.fixture(scope="module")
def score_case():
    torch.manual_seed(0)
    m = TinyCNN().eval()
    with torch.no_grad():
        m.conv2.weight[0] = 0.0  # channel 0 of relu2 is constant: the skipped path of IS-CAM
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with model_state(m), torch.no_grad():
        a, _ = activations_and_logits(m, x, "relu2", need_grad=False)
    return m, x, a, [2, 4]


def test_sscam_equals_torchcam_with_the_same_noise(score_case):
    m, x, a, cls = score_case
    b, k = a.shape[:2]
    n = 3
    torch.manual_seed(11)
    noises = [torch.randn(b, k, 16, 16) * 2.0 for _ in range(n)]
    ext = torchcam_methods.SSCAM(m, "relu2", batch_size=7, num_samples=n, std=2.0)
    try:
        with torch.no_grad():
            m(x)
        torch.manual_seed(11)
        theirs = ext(cls, normalized=False)[0]
    finally:
        ext.remove_hooks()
    with model_state(m), torch.inference_mode():
        alpha = sscam_weights(m, x, a, selector(cls), 4, num_samples=n, std=2.0, normalize_first=True,
                              noise=lambda i, rows: noises[i].reshape(b * k, 1, 16, 16)[rows])
    mine = sscam_maps(a, alpha)[:, 0].clamp_min(0)
    assert (mine - theirs).abs().max() <= TOL * theirs.abs().max()


def sscam_by_loop(m, x, a, cls, n, std, seed):
    """The paper's SS-CAM, one image, channel and noisy copy at a time, with camkit's seeded noise."""
    from camkit.cam.methods.smoothgradcampp import seeded_normal

    out = []
    for b in range(x.shape[0]):
        s = []
        for k in range(a.shape[1]):
            up = torch.nn.functional.interpolate(a[b : b + 1, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            tot = 0.0
            for i in range(n):
                with torch.no_grad():
                    tot += float(m(x[b : b + 1] * (mask + seeded_normal(seed, (i, k), (1, 16, 16), std)))[0, cls[b]])
            s.append(tot / n)
        alpha = torch.softmax(torch.tensor(s), 0)
        out.append((alpha[:, None, None] * a[b]).sum(0))
    return torch.stack(out)


def test_sscam_default_equals_the_papers_loop_for_any_batch_size(score_case):
    m, x, a, cls = score_case
    ref = sscam_by_loop(m, x, a, cls, n=2, std=0.5, seed=9)
    for bs in (3, 100):
        with model_state(m), torch.inference_mode():
            alpha = sscam_weights(m, x, a, selector(cls), bs, num_samples=2, std=0.5, seed=9)
        assert torch.allclose(sscam_maps(a, alpha)[:, 0], ref, rtol=1e-5, atol=1e-6), bs


def test_iscam_equals_torchcam(score_case):
    m, x, a, cls = score_case
    ext = torchcam_methods.ISCAM(m, "relu2", batch_size=7, num_samples=4)
    try:
        with torch.no_grad():
            m(x)
        theirs = ext(cls, normalized=False)[0]
    finally:
        ext.remove_hooks()
    with model_state(m), torch.inference_mode():
        alpha = iscam_weights(m, x, a, selector(cls), 5, num_samples=4, normalize_first=True)
    mine = sscam_maps(a, alpha)[:, 0].clamp_min(0)
    assert (mine - theirs).abs().max() <= TOL * theirs.abs().max()
    assert iscam_coefficients(4).tolist() == pytest.approx([0.25, 0.75, 1.5, 2.5])  # 1/4, +2/4, +3/4, +4/4


def test_iscam_forwards_a_constant_channel_once(score_case):
    m, x, a, cls = score_case
    seen = []

    def forward(inp):
        seen.append(inp.shape[0])
        return m(inp)

    with model_state(m), torch.inference_mode():
        alpha = iscam_weights(forward, x, a, selector(cls), 1000, num_samples=4)
    b, k = a.shape[:2]
    constant = int(((a.amax(dim=(2, 3)) - a.amin(dim=(2, 3))) <= 0).sum())
    assert constant >= b  # channel 0 of every image
    assert sum(seen) == 1 + 4 * (b * k - constant)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(b, 1))


def test_new_methods_reach_compute_method_maps(score_case):
    m, x, _, cls = score_case
    for name in ("sscam", "iscam", "smoothgradcam++"):
        r = compute_method_maps(m, x, name, [[c] for c in cls], layer="relu2", batch_size=64)
        assert r.method == name and r.maps.shape == (2, 1, 8, 8) and r.layer == "relu2"
        assert torch.isfinite(r.maps).all() and r.class_idx[:, 0].tolist() == cls


# ---------------------------------------------------------------- LeGrad


def tiny_vits():
    """A torchvision ViT and a timm ViT with the same weights (same function: checked)."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    from torchvision.models import VisionTransformer as TVViT

    torch.manual_seed(0)
    e, depth = 16, 3
    tv = TVViT(image_size=32, patch_size=8, num_layers=depth, num_heads=2, hidden_dim=e, mlp_dim=32, num_classes=10).eval()
    with torch.no_grad():
        for p in tv.parameters():
            p.normal_(0, 0.3)
    tm = TimmViT(img_size=32, patch_size=8, embed_dim=e, depth=depth, num_heads=2, mlp_ratio=2.0, qkv_bias=True, num_classes=10).eval()
    with torch.no_grad():
        tm.patch_embed.proj.load_state_dict(tv.conv_proj.state_dict())
        tm.cls_token.copy_(tv.class_token)
        tm.pos_embed.copy_(tv.encoder.pos_embedding)
        for blk, t in zip(tm.blocks, tv.encoder.layers, strict=True):
            blk.norm1.load_state_dict(t.ln_1.state_dict())
            blk.norm2.load_state_dict(t.ln_2.state_dict())
            blk.attn.qkv.weight.copy_(t.self_attention.in_proj_weight)
            blk.attn.qkv.bias.copy_(t.self_attention.in_proj_bias)
            blk.attn.proj.load_state_dict(t.self_attention.out_proj.state_dict())
            blk.mlp.fc1.load_state_dict(t.mlp[0].state_dict())
            blk.mlp.fc2.load_state_dict(t.mlp[3].state_dict())
        tm.norm.load_state_dict(tv.encoder.ln.state_dict())
        tm.head.load_state_dict(tv.heads.head.state_dict())
    return tv, tm


@pytest.fixture(scope="module")
def vits():
    tv, tm = tiny_vits()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (tv(x) - tm(x)).abs().max() < 1e-5
    return tv, tm, x, [3, 7]


def test_legrad_equals_torchcam_on_a_torchvision_vit(vits):
    tv, _, x, cls = vits
    names = block_names(tv, None)
    r = compute_method_maps(tv, x, "legrad", [[c] for c in cls])
    assert r.maps.shape == (2, 1, 4, 4) and r.layer == "encoder.layers.encoder_layer_0+encoder.layers.encoder_layer_1+encoder.layers.encoder_layer_2"
    # torch-cam with the model's own class-token head (its default pools the mean of all tokens)
    ext = torchcam_methods.LeGrad(tv, names, score_projection=lambda t: tv.heads(tv.encoder.ln(t)[:, 0]))
    try:
        tv(x)
        theirs = ext(cls, normalized=False)[0].detach()
    finally:
        ext.remove_hooks()
    assert (r.maps[:, 0] - theirs).abs().max() <= TOL * theirs.abs().max()
    # two blocks only
    r2 = compute_method_maps(tv, x, "legrad", [[c] for c in cls], layer=names[1:])
    ext = torchcam_methods.LeGrad(tv, names[1:], score_projection=lambda t: tv.heads(tv.encoder.ln(t)[:, 0]))
    try:
        tv(x)
        theirs2 = ext(cls, normalized=False)[0].detach()
    finally:
        ext.remove_hooks()
    assert (r2.maps[:, 0] - theirs2).abs().max() <= TOL * theirs2.abs().max()


def test_legrad_timm_equals_torchvision_with_the_same_weights(vits):
    tv, tm, x, cls = vits
    a = compute_method_maps(tv, x, "legrad", [[c] for c in cls]).maps
    b = compute_method_maps(tm, x, "legrad", [[c] for c in cls]).maps
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()))
    assert all(blk.attn.fused_attn == timm.layers.use_fused_attn() for blk in tm.blocks)  # restored
    assert not any(p.requires_grad is False for p in tm.parameters())  # flags restored


def test_legrad_last_block_is_the_gradient_of_the_logit(vits):
    """One block: the relevance is mean_{h,i} ReLU(dlogit/dA), checked with a plain autograd loop."""
    _, tm, x, cls = vits
    got = compute_method_maps(tm, x, "legrad", [[c] for c in cls], layer="blocks.2").maps[:, 0]
    store = {}
    blk = tm.blocks[2].attn
    blk.fused_attn = False
    h = blk.attn_drop.register_forward_hook(lambda _m, _i, o: store.__setitem__("p", o))
    try:
        with torch.enable_grad():
            logits = tm(x.clone().requires_grad_(True))
            (g,) = torch.autograd.grad(logits.gather(1, torch.tensor(cls)[:, None]).sum(), store["p"])
    finally:
        h.remove()
        blk.fused_attn = timm.layers.use_fused_attn()
    ref = g.clamp_min(0).mean(dim=(1, 2))[:, 1:].reshape(2, 4, 4)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-9)


def test_legrad_uses_the_models_reshape_activations(vits):
    """The token seam: a model's reshape_activations decides the grid (here a transposed one)."""
    _, tm, x, cls = vits

    class Wrapped(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        @staticmethod
        def reshape_activations(t):
            b, n, c = t.shape
            return t[:, 1:].reshape(b, 4, 4, c).permute(0, 3, 2, 1)  # [B, C, w, h]: transposed on purpose

    plain = compute_method_maps(tm, x, "legrad", [[c] for c in cls]).maps
    wrapped = compute_method_maps(Wrapped(tm), x, "legrad", [[c] for c in cls], layer=["blocks.0", "blocks.1", "blocks.2"]).maps
    assert torch.allclose(wrapped, plain.transpose(-1, -2), rtol=1e-5, atol=1e-9)


def test_legrad_refuses_a_cnn(tiny):
    from camkit.errors import ModelError

    m, x, cls = tiny
    with pytest.raises(ModelError, match="vision transformers"):
        compute_method_maps(m, x, "legrad", 1)
