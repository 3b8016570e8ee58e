"""Every CAM method on the real ILSVRC sample: MaxBoxAccV2, GT-known loc and faithfulness, side by side.

Runs ``camkit evaluate --method M --faithfulness`` (the Python API, same thing) for each method with the
embedded EfficientNet-Lite0 on ../shared/data/ilsvrc_val_sample and prints a Markdown table.
Run: ``.venv/bin/python bench/eval_methods.py [--steps 224] [--out camkit-out/methods]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import markdown_table  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ilsvrc_val_sample"
METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=224, help="deletion/insertion steps (RISE: 224)")
    ap.add_argument("--out", type=Path, default=Path("camkit-out/methods"))
    args = ap.parse_args()
    if not (SAMPLE / "val").is_dir():
        sys.exit(f"the ILSVRC sample is not at {SAMPLE}")

    from camkit.cli.common import keep_allocator_memory
    from camkit.datasets import read_ilsvrc
    from camkit.evaluate import evaluate
    from camkit.models import load_model

    keep_allocator_memory()
    ds = read_ilsvrc(SAMPLE)
    model = load_model("efficientnet_lite0")
    rows = []
    for m in METHODS:
        t0 = time.perf_counter()
        s = evaluate(ds, model, batch_size=12, workers=0, out_dir=args.out / m, method=m, progress=False,
                     faithfulness=True, faithfulness_steps=args.steps)
        f = s["faithfulness"]
        rows.append([m, f"{s['maxboxacc_v2']:.1f}", f"{s['maxboxacc']:.1f}", f"{s['gt_known_loc']:.1f}",
                     f"{f['deletion_auc']:.3f}", f"{f['insertion_auc']:.3f}", f"{f['average_drop']:.1f}",
                     f"{f['increase_in_confidence']:.1f}", f"{time.perf_counter() - t0:.0f}"])
        print(m, "done", flush=True)
    print(f"\nefficientnet_lite0 (embedded), {len(ds.samples)} ILSVRC val images, wsolevaluation protocol (224 squash), "
          f"faithfulness with {args.steps} deletion/insertion steps\n")
    print(markdown_table(["method", "MaxBoxAccV2", "MaxBoxAcc", "GT-known loc", "deletion AUC (lower)",
                          "insertion AUC (higher)", "avg drop % (lower)", "increase % (higher)", "seconds"], rows))


if __name__ == "__main__":
    main()
