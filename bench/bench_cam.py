"""CAM cost vs the plain forward pass and vs the peers (issue 2 speed targets).

Measured in one run, interleaved (9 rounds, medians), after warm-up, with glibc told to keep freed memory (camkit.malloc_tuning),
batch 32 at 224x224 on the CPU:

- forward: the plain network forward (``model.net(x)``) under inference_mode, of the network as ``load_model``
  gives it (channels-last weights, ``camkit.models.memory_format``); the peers run on that same network;
- NCHW forward: the same forward with the weights in PyTorch's default NCHW layout (a network as torchvision
  builds it), for the speed-up the layout gives;
- camkit: one forward + top-5 CAMs (one einsum) upsampled bicubic to 224 (``compute_cams`` + ``upsample``);
- torch-cam CAM: the same work with torchcam.methods.CAM (hooks; one call per rank of the top-5) + the same upsample;
- grad-cam GradCAM: pytorch-grad-cam's GradCAM for the top-1 class only (one call; its usual use).

Then the start-up cost of ``camkit explain photo --json`` (process start to exit) next to
``python -c "import torch"``, medians of 5 runs.

Run: ``.venv/bin/python bench/bench_cam.py`` (or ``python3 tools/dev.py bench``).
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _timing import interleaved, markdown_table  # noqa: E402

from camkit.cam import compute_cams, upsample  # noqa: E402
from camkit.cli.common import keep_allocator_memory  # noqa: E402
from camkit.models import load_model  # noqa: E402

BATCH, SIZE, TOPK = 32, 224, 5


def bench_model(name: str, weights: str | None, target_layer: str, fc_layer: str) -> list[object]:
    from pytorch_grad_cam import GradCAM
    from torchcam.methods import CAM

    model = load_model(name, weights=weights)
    net = model.net
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode():
            return net(x)

    def forward_nchw():
        with torch.inference_mode():
            return nchw(x)

    def camkit_cam():
        res = compute_cams(model, x, TOPK)
        return upsample(res.maps, (SIZE, SIZE), "bicubic")

    def torchcam_cam():
        with CAM(net, target_layer, fc_layer) as extractor:
            with torch.inference_mode():
                out = net(x)
            top = out.topk(TOPK, dim=1).indices
            maps = [extractor(top[:, r].tolist(), out, normalized=False)[0] for r in range(TOPK)]
            with torch.inference_mode():
                return F.interpolate(torch.stack(maps, 1), size=(SIZE, SIZE), mode="bicubic", align_corners=False)

    def gradcam_top1():
        with GradCAM(model=net, target_layers=[net.get_submodule(target_layer)]) as cam:
            return cam(input_tensor=x, targets=None)

    # Same results before timing: torch-cam's raw CAM equals ours.
    ours, theirs = camkit_cam(), torchcam_cam()
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(ours.abs().max())), "peer parity broken"

    t = interleaved({"forward": forward, "nchw": forward_nchw, "camkit": camkit_cam, "torchcam": torchcam_cam}, rounds=9)
    tg = interleaved({"forward": forward, "gradcam": gradcam_top1}, rounds=2)
    gradcam_ratio = tg["gradcam"] / tg["forward"]
    return [
        name,
        f"{t['forward'] * 1000:.0f}",
        f"{t['nchw'] * 1000:.0f} ({t['nchw'] / t['forward']:.2f}x)",
        f"{t['camkit'] / t['forward']:.3f}",
        f"{t['torchcam'] / t['forward']:.3f}",
        f"{t['torchcam'] / t['camkit']:.2f}x",
        f"{gradcam_ratio:.2f}",
        f"{gradcam_ratio / (t['camkit'] / t['forward']):.1f}x",
    ]


def startup() -> list[list[object]]:
    from camkit.io.samples import sample_path

    photo = str(sample_path("chelsea"))
    exe = Path(sys.executable)
    camkit_exe = str(exe.with_name("camkit"))
    env = dict(os.environ)

    def run(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        return time.perf_counter() - t0

    cmds = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "camkit explain chelsea.png --json": [camkit_exe, "explain", photo, "--json"],
    }
    for c in cmds.values():
        run(c)  # warm the file cache
    times = {k: [] for k in cmds}
    for _ in range(5):
        for k, c in cmds.items():
            times[k].append(run(c))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["python -c 'import torch'"]
    return [[k, f"{v:.2f}", f"{v - base:+.2f}"] for k, v in med.items()]


def main() -> None:
    keep_allocator_memory()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = [
        bench_model("resnet50", "random", "layer4", "fc"),
        bench_model("efficientnet_lite0", None, "bn2", "classifier"),
    ]
    print(f"\nTop-{TOPK} CAMs upsampled to {SIZE}, batch {BATCH}, CPU ({torch.get_num_threads()} threads); "
          "ratios are time / plain forward of the same batch, medians of interleaved rounds\n")
    print(markdown_table(
        ["model", "forward ms", "NCHW forward ms (/ forward)", "camkit CAM / fwd", "torch-cam CAM / fwd", "camkit speed-up vs torch-cam",
         "grad-cam GradCAM (top-1) / fwd", "camkit speed-up vs grad-cam"], rows))
    print("\nStart-up, process start to exit (median of 5, seconds)\n")
    print(markdown_table(["command", "seconds", "vs import torch"], startup()))


if __name__ == "__main__":
    main()
