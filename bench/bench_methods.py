"""Every CAM method of camkit's pytorch-grad-cam catalogue: time per call next to pytorch-grad-cam 1.5.7 (and
torch-cam 0.5.0 where it has the method), as a multiple of one plain forward pass (CPU, one process).

    python bench/bench_methods.py [--rounds 5]     # about 2-4 minutes on 2 busy cores

Setting (small, so that it stays short): the embedded EfficientNet-Lite0 (real ImageNet weights), skimage's
chelsea photo at 224 px (crop), batch 1, the top-1 class. Layer methods explain ``bn2`` (1280 x 7 x 7,
the map the head pools) unless stated. The perturbation methods run one forward per channel, so they
explain ``blocks.2`` (40 channels, 28 x 28): Score-CAM 40 masked inputs, Ablation-CAM 40 ablations,
32 per forward for every library. SESS runs 2 scales (5 patches, 224 px window) instead of the default 12
(122 patches) in both libraries. RefineCAM uses blocks.4, blocks.5 and bn2 (Grad-CAM++) in both.
A second table: Ablation-CAM at the map the head pools (``bn2``, 1280 channels, 40 forwards of 32 ablations
in pytorch-grad-cam; camkit re-runs only pool + linear on them), at 112 px to keep the peer's share short,
one timed call each after a warm-up call of camkit's.
Every contender runs in the same process, after one warm-up round, interleaved round by round
(bench/_timing.py); the median over rounds is reported.

Where the peers do different work, the table says so: pytorch-grad-cam's FullGrad collects exact
``Conv2d``/``BatchNorm2d`` types only, which on Lite0 (fused BatchNormAct2d, bias-free convs) is just the
input-gradient term; its Guided Backprop swaps ``nn.ReLU`` modules, and Lite0's ReLU6 is functional, so
it computes the plain gradient; its Sobel works on the uint8 photo without the network (camkit's
``sobelcam`` also runs the forward for the scores); DFF: scikit-learn's coordinate-descent NMF (peer) vs
camkit's multiplicative updates (5 components both).
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from camkit.cli.common import keep_allocator_memory  # noqa: E402

keep_allocator_memory()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import interleaved, markdown_table  # noqa: E402

warnings.filterwarnings("ignore")

PERTURB_LAYER = "blocks.2"
REFINE_LAYERS = ["blocks.4", "blocks.5", "bn2"]


def contenders():
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.ablation_cam as pgc_ablation
    import pytorch_grad_cam.score_cam as pgc_score
    import skimage.data
    import torchcam.methods as tcm
    from PIL import Image
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization
    from pytorch_grad_cam.sobel_cam import sobel_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from camkit.cam.methods import compute_method_maps
    from camkit.cam.methods.base import model_state
    from camkit.cam.methods.sess import sess_map
    from camkit.models import load_model

    pgc_score.tqdm.tqdm = lambda it, *a, **k: it  # silence the progress bars
    pgc_ablation.tqdm.tqdm = lambda it, *a, **k: it

    model = load_model("efficientnet_lite0")
    net = model.net
    photo = skimage.data.chelsea()
    arr, _ = model.preprocess.to_array(Image.fromarray(photo), "crop")
    x = torch.from_numpy(arr)[None]
    with torch.no_grad():
        top1 = int(model(x).argmax())
    u8 = np.asarray(Image.fromarray(photo).resize((224, 224)))
    targets = [ClassifierOutputTarget(top1)]
    bn2 = net.bn2

    def ck(method, layer=None, **kw):
        return lambda: compute_method_maps(model, x, method, classes=[top1], layer=layer, batch_size=32, **kw)

    def peer(cls, layers, **kw):
        cam = cls(model=net, target_layers=layers, **kw)

        def call():
            cam(input_tensor=x, targets=targets)
            net.zero_grad(set_to_none=True)
        return call

    def tc(name, layer="bn2", **kw):
        ext = getattr(tcm, name)(net, target_layer=layer, **kw)

        def call():
            if name in ("ScoreCAM", "CAM"):
                with torch.no_grad():
                    net(x)
                ext(class_idx=top1)
            else:
                ext(class_idx=top1, scores=net(x))
            net.zero_grad(set_to_none=True)
        return call

    sub = net.get_submodule
    score = pgc.ScoreCAM(model=net, target_layers=[sub(PERTURB_LAYER)])
    score.batch_size = 32
    ablation = pgc.AblationCAM(model=net, target_layers=[sub(PERTURB_LAYER)], batch_size=32)
    gb_net = copy.deepcopy(net)  # pytorch-grad-cam's guided backprop replaces modules in place
    gb = pgc.GuidedBackpropReLUModel(gb_net, device="cpu")
    dff = DeepFeatureFactorization(model=net, target_layer=bn2)
    sess = pgc.SESS(net, [bn2], base_method=pgc.GradCAM, num_scales=2)
    refine = pgc.RefineCAM(net, [sub(n) for n in REFINE_LAYERS])
    finer = pgc.FinerCAM(net, [bn2])

    def camkit_sess():
        with model_state(model):
            sess_map(model, x, top1, "net.bn2", 32, num_scales=2)

    def fullgrad_peer():
        fg = pgc.FullGrad(model=net, target_layers=[])
        fg(input_tensor=x, targets=targets)
        fg.activations_and_grads.release()
        net.zero_grad(set_to_none=True)

    rows = {  # method -> (camkit, pytorch-grad-cam, torch-cam, note)
        "cam": (ck("cam"), None, tc("CAM", fc_layer="classifier"), "torch-cam CAM"),
        "gradcam": (ck("gradcam"), peer(pgc.GradCAM, [bn2]), tc("GradCAM"), ""),
        "gradcam++": (ck("gradcam++"), peer(pgc.GradCAMPlusPlus, [bn2]), tc("GradCAMpp"), ""),
        "xgradcam": (ck("xgradcam"), peer(pgc.XGradCAM, [bn2]), tc("XGradCAM"), ""),
        "layercam": (ck("layercam"), peer(pgc.LayerCAM, [bn2]), tc("LayerCAM"), ""),
        "hirescam": (ck("hirescam"), peer(pgc.HiResCAM, [bn2]), None, ""),
        "gradcamelementwise": (ck("gradcamelementwise"), peer(pgc.GradCAMElementWise, [bn2]), None, ""),
        "eigencam": (ck("eigencam"), peer(pgc.EigenCAM, [bn2]), None, ""),
        "eigengradcam": (ck("eigengradcam"), peer(pgc.EigenGradCAM, [bn2]), None, ""),
        "segeigencam": (ck("segeigencam"), peer(pgc.SegEigenCAM, [bn2]), None, ""),
        "kpcacam": (ck("kpcacam"), peer(pgc.KPCA_CAM, [bn2]), None, ""),
        "fem": (ck("fem"), peer(pgc.FEM, [bn2]), None, ""),
        "randomcam": (ck("randomcam"), peer(pgc.RandomCAM, [bn2]), None, ""),
        "shapleycam": (ck("shapleycam"), peer(pgc.ShapleyCAM, [bn2]), None, ""),
        "finercam": (ck("finercam"), lambda: finer(x, targets=None), None, ""),
        "scorecam": (ck("scorecam", PERTURB_LAYER), lambda: score(input_tensor=x, targets=targets),
                     tc("ScoreCAM", PERTURB_LAYER, batch_size=32), f"{PERTURB_LAYER}: 40 masks"),
        "ablationcam": (ck("ablationcam", PERTURB_LAYER), lambda: ablation(input_tensor=x, targets=targets), None,
                        f"{PERTURB_LAYER}: 40 ablations"),
        "dff": (ck("dff"), lambda: dff(x, 5), None, "5 components"),
        "fullgrad": (ck("fullgrad"), fullgrad_peer, None, "peer: input term only on Lite0"),
        "guidedbackprop": (ck("guidedbackprop"), lambda: gb(x, target_category=top1), None, "peer: plain gradient on Lite0"),
        "guidedgradcam": (ck("guidedgradcam"), None, None, ""),
        "refinecam": (ck("refinecam", REFINE_LAYERS), lambda: refine(x, targets), None, "3 layers"),
        "sess": (camkit_sess, lambda: sess(x, targets), None, "2 scales, 5 patches"),
        "sobelcam": (ck("sobelcam"), lambda: sobel_cam(u8), None, "peer: no forward"),
    }

    def forward():
        with torch.inference_mode():
            model(x)

    return forward, rows


def main(rounds: int = 5) -> None:
    torch.manual_seed(0)
    start = time.perf_counter()
    forward, rows = contenders()
    fns = {"forward": forward}
    for name, (mine, theirs, tcam, _) in rows.items():
        fns[f"camkit {name}"] = mine
        if theirs is not None:
            fns[f"pgc {name}"] = theirs
        if tcam is not None:
            fns[f"tc {name}"] = tcam
    t = interleaved(fns, rounds=rounds, warmup=1)
    f = t["forward"]

    def cell(key):
        return f"{t[key]:.3f} ({t[key] / f:.1f}x)" if key in t else "-"

    table = []
    for name, (_, _, _, note) in rows.items():
        ratio = f"{t[f'pgc {name}'] / t[f'camkit {name}']:.2f}x" if f"pgc {name}" in t else "-"
        table.append([name, cell(f"camkit {name}"), cell(f"pgc {name}"), cell(f"tc {name}"), ratio, note])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; plain forward {f:.3f} s "
          f"(Lite0, 1 x 224 px); median of {rounds} interleaved rounds after a warm-up round\n")
    print(markdown_table(["method", "camkit s (x forward)", "pytorch-grad-cam", "torch-cam", "pgc / camkit", "note"], table))
    print("\n" + head_ablation())
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


def head_ablation() -> str:
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.ablation_cam as pgc_ablation
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from camkit.cam.methods import compute_method_maps
    from camkit.models import load_model

    pgc_ablation.tqdm.tqdm = lambda it, *a, **k: it
    model = load_model("efficientnet_lite0")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        top1 = int(model(x).argmax())

    def forward():
        with torch.inference_mode():
            model(x)

    def camkit():
        compute_method_maps(model, x, "ablationcam", classes=[top1], batch_size=32)

    peer = pgc.AblationCAM(model=model.net, target_layers=[model.net.bn2], batch_size=32)
    forward(), camkit()  # warm-up
    t = {}
    for name, fn in (("forward", forward), ("camkit", camkit), ("pgc", lambda: peer(input_tensor=x, targets=[ClassifierOutputTarget(top1)]))):
        t0 = time.perf_counter()
        fn()
        t[name] = time.perf_counter() - t0
    f = t["forward"]
    return markdown_table(
        ["Ablation-CAM, Lite0 bn2 (1280 ch), 1 x 112 px", "forward", "camkit", "pytorch-grad-cam", "pgc / camkit"],
        [["one call", f"{f:.3f}", f"{t['camkit']:.3f} ({t['camkit'] / f:.1f}x)", f"{t['pgc']:.2f} ({t['pgc'] / f:.1f}x)",
          f"{t['pgc'] / t['camkit']:.0f}x"]],
    )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (the median is reported)")
    main(ap.parse_args().rounds)
