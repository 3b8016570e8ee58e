"""Python API vs CLI on the same photos and method, each a fresh process, interleaved rounds.

The photos: ``--images`` copies of scikit-image's cat photo (451x300) in a temporary folder, so both
explain the same batch. Three contenders, each timed from process start to exit (import, model load,
explain, exit), with the same batch size (16, both defaults):

- ``cli``: ``camkit explain FOLDER --method M --topk K --json``;
- ``api``: ``python -c "import camkit; camkit.explain(PATHS, method=M, topk=K)"`` (the library
  applies its glibc malloc tuning on the first explain call);
- ``api, no tuning``: the same with ``CAMKIT_NO_MALLOC_TUNING=1`` (what the API did before it
  tuned the allocator itself).

Prints the median seconds of ``--rounds`` interleaved rounds (after one warm-up round) and the
ratios to the CLI. Defaults: Grad-CAM, top-5, 16 photos, 3 rounds (about 2 minutes on a busy
2-core CPU). ``--method scorecam --images 1`` shows the largest gap (minutes per round here).

    .venv/bin/python bench/bench_api.py [--method gradcam] [--images 16] [--topk 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import markdown_table  # noqa: E402

from camkit.io.samples import sample_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="camkit-bench-api-"))
    try:
        photos = [str(folder / f"chelsea_{i:02d}.png") for i in range(args.images)]
        for p in photos:
            shutil.copy(sample_path("chelsea"), p)
        med = _run(args, folder, photos)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.method}, top-{args.topk}, {args.images} x chelsea 451x300, efficientnet_lite0, batch 16; process start to "
          f"exit, median of {args.rounds} interleaved rounds (seconds)\n")
    print(markdown_table(["contender", "seconds", "ratio to cli"],
                         [[k, f"{v:.2f}", f"{v / med['cli']:.2f}x"] for k, v in med.items()]))


def _run(args, folder: Path, photos: list[str]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "CAMKIT_NO_MALLOC_TUNING"}
    api_code = f"import camkit; camkit.explain({photos!r}, method={args.method!r}, topk={args.topk})"
    contenders = {
        "cli": ([sys.executable, "-m", "camkit", "explain", str(folder), "--method", args.method, "--topk", str(args.topk), "--json"], env),
        "api": ([sys.executable, "-c", api_code], env),
        "api, no tuning": ([sys.executable, "-c", api_code], {**env, "CAMKIT_NO_MALLOC_TUNING": "1"}),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds + 1):  # round 0 warms the page cache and is not counted
        for name, (cmd, e) in contenders.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, env=e, check=True, capture_output=True)
            if r:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()
