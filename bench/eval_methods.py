"""Every CAM method on the real ILSVRC sample: MaxBoxAccV2, GT-known loc and faithfulness, side by side.

Runs ``camkit evaluate --method M [--faithfulness]`` (the Python API, same thing) for each method with the
embedded EfficientNet-Lite0 on ../shared/data/ilsvrc_val_sample and prints a Markdown table, one row as
each method finishes. Evaluate explains the GT class and the top-5 classes of every image (6 maps per
image), so a perturbation method costs 6 x its single-class time per image.

    .venv/bin/python bench/eval_methods.py [--steps 224] [--out camkit-out/methods]
        [--method M ...] [--no-faithfulness M|all ...] [--layer NAME]

``--layer`` explains that module instead of each method's automatic layer (``bn2`` on this model) and
names it in the row, e.g. ``sscam (blocks.2)``: the perturbation methods forward one masked input per
channel (times their noise samples), so a narrower layer is what makes SS-CAM and IS-CAM practical here.

LeGrad is left out: it explains vision transformers only (it refuses a CNN).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import markdown_table  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ilsvrc_val_sample"
VIT_ONLY = ("legrad",)
HEADER = ["method", "MaxBoxAccV2", "MaxBoxAcc", "GT-known loc", "deletion AUC (lower)", "insertion AUC (higher)",
          "avg drop % (lower)", "increase % (higher)", "seconds"]


def main() -> None:
    from camkit.cam.methods import METHODS

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=224, help="deletion/insertion steps (RISE: 224)")
    ap.add_argument("--out", type=Path, default=Path("camkit-out/methods"))
    ap.add_argument("--method", action="append", default=None, help="only these methods (repeatable); default: all but LeGrad")
    ap.add_argument("--no-faithfulness", action="append", default=[], metavar="METHOD",
                    help="evaluate this method's boxes only (repeatable; 'all' for every method): faithfulness costs "
                         "about 450 forwards per image")
    ap.add_argument("--layer", default=None, help="target layer of every method (module name); default: automatic")
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
    methods = args.method or [m for m in METHODS if m not in VIT_ONLY]
    rows = []
    for m in methods:
        faithful = m not in args.no_faithfulness and "all" not in args.no_faithfulness
        t0 = time.perf_counter()
        # No galleries: they recompute the maps of their images, which would double a slow method's time.
        label = f"{m} ({args.layer})" if args.layer else m
        out_dir = args.out / (f"{m}-{args.layer}" if args.layer else m)
        s = evaluate(ds, model, batch_size=12, workers=0, out_dir=out_dir, method=m, layer=args.layer,
                     progress=False, faithfulness=faithful, faithfulness_steps=args.steps, gallery_size=0)
        f = s.get("faithfulness") if faithful else None
        cells = ([f"{f['deletion_auc']:.3f}", f"{f['insertion_auc']:.3f}", f"{f['average_drop']:.1f}",
                  f"{f['increase_in_confidence']:.1f}"] if f else ["-"] * 4)
        rows.append([label, f"{s['maxboxacc_v2']:.1f}", f"{s['maxboxacc']:.1f}", f"{s['gt_known_loc']:.1f}", *cells,
                     f"{time.perf_counter() - t0:.0f}"])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    print(f"\nefficientnet_lite0 (embedded), {len(ds.samples)} ILSVRC val images, wsolevaluation protocol (224 squash), "
          f"faithfulness with {args.steps} deletion/insertion steps ('-': not measured)\n")
    print(markdown_table(HEADER, rows))


if __name__ == "__main__":
    main()
