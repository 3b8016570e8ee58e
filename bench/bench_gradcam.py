"""Grad-CAM and Score-CAM speed against torch-cam 0.5.0 and pytorch-grad-cam 1.5.7 (CPU).

    python bench/bench_gradcam.py            # ~5-10 minutes on 2 cores

Part 1 (batch 32, 224x224, resnet50 random weights and the embedded EfficientNet-Lite0, top-1 class):
plain forward, camkit Grad-CAM, torch-cam GradCAM, pytorch-grad-cam GradCAM. Every contender runs in
the same process, after warm-up, interleaved round by round (glibc's allocator state changes CPU
timings by up to 2.6x; ``keep_allocator_memory`` fixes it for all of them); the median over
rounds is reported, and ratios to the forward pass.

Part 2 (Score-CAM, 1 image at 112x112, 32 masked inputs per forward; one mask per channel, so all
three run the same number of masks): resnet18 layer1..layer4 (64 / 128 / 256 / 512 channels) shows
how the time grows with the channel count, and EfficientNet-Lite0's 1280-channel head map is the
large case. (resnet50's 2048-channel layer4 at batch 32 would be 65,536 forwards: hours on this CPU;
the per-mask cost in the table is what scales.)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from camkit.cli.common import keep_allocator_memory  # noqa: E402

keep_allocator_memory()

import torch  # noqa: E402
from _timing import interleaved  # noqa: E402

warnings.filterwarnings("ignore")


def gradcam_part(model_name: str, rounds: int) -> list[str]:
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TCGradCAM

    from camkit.cam.methods import compute_method_maps
    from camkit.models import load_model

    model = load_model(model_name, weights="random" if model_name != "efficientnet_lite0" else None)
    layer = {"resnet50": "layer4", "efficientnet_lite0": "bn2"}[model_name]
    torch.manual_seed(0)
    x = torch.randn(32, 3, 224, 224)
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()

    def forward():
        with torch.inference_mode():
            model(x)

    def camkit_gradcam():
        compute_method_maps(model, x, "gradcam", classes=1)

    tc = TCGradCAM(model.net, target_layer=layer)

    def torchcam_gradcam():
        out = model.net(x)
        tc(class_idx=top1, scores=out)
        model.net.zero_grad(set_to_none=True)

    pgc = PGCGradCAM(model=model.net, target_layers=[model.net.get_submodule(layer)])
    targets = [ClassifierOutputTarget(c) for c in top1]

    def pgc_gradcam():
        pgc(input_tensor=x, targets=targets)
        model.net.zero_grad(set_to_none=True)

    t = interleaved({"forward": forward, "camkit": camkit_gradcam, "torch-cam": torchcam_gradcam,
                     "pytorch-grad-cam": pgc_gradcam}, rounds=rounds)
    tc.remove_hooks()
    pgc.activations_and_grads.release()
    f = t["forward"]
    return [
        f"| {model_name} | {f:.3f} | {t['camkit']:.3f} ({t['camkit'] / f:.2f}x) | {t['torch-cam']:.3f} ({t['torch-cam'] / f:.2f}x) "
        f"| {t['pytorch-grad-cam']:.3f} ({t['pytorch-grad-cam'] / f:.2f}x) | {t['torch-cam'] / t['camkit']:.2f}x / {t['pytorch-grad-cam'] / t['camkit']:.2f}x |"
    ]


def _scorecam_row(model_name: str, model, layer: str, rounds: int) -> str:
    """One table row: Score-CAM at ``layer`` of ``model`` by camkit, torch-cam and pytorch-grad-cam."""
    from pytorch_grad_cam import ScoreCAM as PGCScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ScoreCAM as TCScoreCAM

    from camkit.cam.methods import compute_method_maps

    torch.manual_seed(0)
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()
    module = model.net.get_submodule(layer)

    def camkit_sc():
        compute_method_maps(model, x, "scorecam", classes=1, layer=layer, batch_size=32)

    tc = TCScoreCAM(model.net, target_layer=layer, batch_size=32)

    def torchcam_sc():
        with torch.no_grad():
            model.net(x)
        tc(class_idx=top1)

    pgc = PGCScoreCAM(model=model.net, target_layers=[module])
    pgc.batch_size = 32
    targets = [ClassifierOutputTarget(c) for c in top1]

    def pgc_sc():
        pgc(input_tensor=x, targets=targets)

    contenders = {"camkit": camkit_sc, "torch-cam": torchcam_sc, "pytorch-grad-cam": pgc_sc}
    t = interleaved(contenders, rounds=rounds)
    tc.remove_hooks()
    pgc.activations_and_grads.release()
    with torch.no_grad():
        store = {}
        h = module.register_forward_hook(lambda m, i, o: store.__setitem__("c", o.shape[1]))
        model.net(x)
        h.remove()
    masks = store["c"]
    return (
        f"| {model_name} {layer} | {masks} | {t['camkit']:.2f} ({1000 * t['camkit'] / masks:.1f} ms/mask) "
        f"| {t['torch-cam']:.2f} | {t['pytorch-grad-cam']:.2f} | {t['torch-cam'] / t['camkit']:.2f}x / {t['pytorch-grad-cam'] / t['camkit']:.2f}x |"
    )


def scorecam_part(rounds: int) -> list[str]:
    import pytorch_grad_cam.score_cam as pgc_score_module

    pgc_score_module.tqdm.tqdm = lambda it, *a, **k: it  # silence its progress bars

    from camkit.models import load_model

    rows = []
    cases = [("resnet18", "random", layer) for layer in ("layer1", "layer2", "layer3", "layer4")]
    cases.append(("efficientnet_lite0", None, "bn2"))
    models = {}
    for model_name, weights, layer in cases:
        if model_name not in models:
            models[model_name] = load_model(model_name, weights=weights)
        rows.append(_scorecam_row(model_name, models[model_name], layer, rounds))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    start = time.perf_counter()
    print("\n### Grad-CAM, batch 32, 224x224, top-1 class (median of rounds, seconds; ratio to the forward pass)\n")
    print("| model | forward | camkit Grad-CAM | torch-cam GradCAM | pytorch-grad-cam GradCAM | peer / camkit |")
    print("|---|---|---|---|---|---|", flush=True)
    for name in ("resnet50", "efficientnet_lite0"):
        for row in gradcam_part(name, rounds=3 if name != "resnet50" else 2):
            print(row, flush=True)
    print("\n### Score-CAM, 1 image at 112x112, 32 masked inputs per forward (median of 3 interleaved rounds after a warm-up run, seconds)\n")
    print("| target layer | channels = masks | camkit | torch-cam | pytorch-grad-cam | peer / camkit |")
    print("|---|---|---|---|---|---|", flush=True)
    scorecam_part(rounds=3)  # medians of 3 interleaved rounds after a warm-up run
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
