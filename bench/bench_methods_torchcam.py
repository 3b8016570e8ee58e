"""Smooth Grad-CAM++, SS-CAM, IS-CAM and LeGrad: camkit against torch-cam 0.5.0 (CPU, one process).

    python bench/bench_methods_torchcam.py [--rounds 3] [--only sscam,iscam,legrad,smoothgradcampp] [--threads 1]
                                                            # about 1-4 minutes on 2 busy cores

Same network, layer, classes, sample count and masked inputs per forward for both; interleaved round by
round after a warm-up (bench/_timing.py) together with one plain forward pass of the same input, median
seconds per call and its multiple of that forward. Other processes slow both sides: the load average
before and after is printed with the table. Settings (small so that it stays short):

- Smooth Grad-CAM++: resnet18 (random weights), layer4, batch 8 at 112 px, 4 noisy copies.
- SS-CAM / IS-CAM: resnet18 layer2 (128 channels), 1 image at 64 px, 3 samples, 64 masked inputs per forward.
- LeGrad: torchvision ViT-B/16-shaped but small (6 blocks, width 192, 3 heads) at 224 px, batch 4, all blocks;
  torch-cam given the class-token head (the model's own) so that both compute the same maps.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _timing import interleaved, markdown_table  # noqa: E402

warnings.filterwarnings("ignore")


METHODS = ("smoothgradcampp", "sscam", "iscam", "legrad")


def forward(net: torch.nn.Module, x: torch.Tensor):
    """One plain forward pass of ``x``, the unit of the table."""

    def call():
        with torch.inference_mode():
            net(x)
    return call


def row(label: str, t: dict[str, float]) -> list[str]:
    f = t["forward"]
    return [label, f"{f:.3f}", f"{t['camkit']:.2f} ({t['camkit'] / f:.1f}x)", f"{t['torch-cam']:.2f} ({t['torch-cam'] / f:.1f}x)",
            f"{t['torch-cam'] / t['camkit']:.2f}x"]


def smoothgradcampp_row(net: torch.nn.Module, rounds: int) -> list[str]:
    import torchcam.methods as tcm

    from camkit.cam.methods import compute_method_maps

    x = torch.randn(8, 3, 112, 112)
    with torch.no_grad():
        top1 = net(x).argmax(1).tolist()
    cls = [[c] for c in top1]
    sg = tcm.SmoothGradCAMpp(net, "layer4", num_samples=4, std=0.3)
    sg.disable_hooks()

    def tc_sg():
        sg.enable_hooks()
        try:
            sg(top1, net(x))
        finally:
            sg.disable_hooks()
            net.zero_grad(set_to_none=True)

    t = interleaved({"forward": forward(net, x),
                     "camkit": lambda: compute_method_maps(net, x, "smoothgradcam++", cls, layer="layer4", batch_size=32),
                     "torch-cam": tc_sg}, rounds=rounds)
    sg.remove_hooks()
    return row("Smooth Grad-CAM++ (resnet18 layer4, 8 x 112 px, n=4)", t)


def score_family_row(net: torch.nn.Module, name: str, rounds: int) -> list[str]:
    """SS-CAM or IS-CAM: the channel weights (masked forwards) after one forward for the activations."""
    import torchcam.methods as tcm

    from camkit.cam.methods.base import activations_and_logits, model_state
    from camkit.cam.methods.iscam import iscam_weights
    from camkit.cam.methods.smoothgradcampp import score_selector
    from camkit.cam.methods.sscam import sscam_weights

    torch.manual_seed(1)
    x1 = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        c1 = [int(net(x1).argmax())]
    cls_name, kw = {"sscam": ("SSCAM", {"num_samples": 3, "std": 2.0}), "iscam": ("ISCAM", {"num_samples": 3})}[name]
    ext = getattr(tcm, cls_name)(net, "layer2", batch_size=64, **kw)
    ext.disable_hooks()

    def tc_run():
        ext.enable_hooks()
        try:
            with torch.no_grad():
                net(x1)
            ext(c1)
        finally:
            ext.disable_hooks()

    def ck_run():
        with model_state(net), torch.inference_mode():
            a, _ = activations_and_logits(net, x1, "layer2", need_grad=False)
            idx = torch.tensor([c1])
            sel = score_selector(idx, idx, None)
            fn = sscam_weights if name == "sscam" else iscam_weights
            fn(net, x1, a, sel, 64, **kw)

    t = interleaved({"forward": forward(net, x1), "camkit": ck_run, "torch-cam": tc_run}, rounds=rounds)
    ext.remove_hooks()
    return row(f"{cls_name} (resnet18 layer2, 128 ch, 1 x 64 px, N=3)", t)


def legrad_row(rounds: int) -> list[str]:
    import torchcam.methods as tcm
    from torchvision.models import VisionTransformer

    from camkit.cam.methods import compute_method_maps

    torch.manual_seed(2)
    vit = VisionTransformer(image_size=224, patch_size=16, num_layers=6, num_heads=3, hidden_dim=192, mlp_dim=768).eval()
    xv = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        cv = vit(xv).argmax(1).tolist()
    names = [f"encoder.layers.encoder_layer_{i}" for i in range(6)]
    lg = tcm.LeGrad(vit, names, score_projection=lambda t: vit.heads(vit.encoder.ln(t)[:, 0]))
    lg.disable_hooks()

    def tc_lg():
        lg.enable_hooks()
        try:
            vit(xv)
            lg(cv)
        finally:
            lg.disable_hooks()

    t = interleaved({"forward": forward(vit, xv), "camkit": lambda: compute_method_maps(vit, xv, "legrad", [[c] for c in cv]),
                     "torch-cam": tc_lg}, rounds=rounds)
    lg.remove_hooks()
    return row("LeGrad (ViT 6 blocks x 192, 4 x 224 px, all blocks)", t)


def main(rounds: int = 3, only: tuple[str, ...] = METHODS) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    load = os.getloadavg()[0]
    rows = []
    if "smoothgradcampp" in only:
        rows.append(smoothgradcampp_row(net, rounds))
    for name in ("sscam", "iscam"):
        if name in only:
            rows.append(score_family_row(net, name, rounds))
    if "legrad" in only:
        rows.append(legrad_row(rounds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {rounds} interleaved rounds after a warm-up round; "
          f"1-minute load average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print(markdown_table(["method (setting)", "forward s", "camkit s (x forward)", "torch-cam s (x forward)", "camkit speed-up"], rows))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (the median is reported)")
    ap.add_argument("--only", default=",".join(METHODS), help=f"comma-separated rows to run, of: {', '.join(METHODS)}")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default); 1 is the "
                    "least sensitive to other processes on a busy machine")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wanted = tuple(m.strip() for m in args.only.split(",") if m.strip())
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        ap.error(f"--only {','.join(unknown)}: not a row; use {', '.join(METHODS)}")
    main(args.rounds, wanted)
