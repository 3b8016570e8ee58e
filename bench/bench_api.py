"""Python API vs CLI on the same photo and method, each a fresh process, interleaved rounds.

Three contenders, each timed from process start to exit (import, model load, explain, exit):

- ``cli``: ``camkit explain PHOTO --method M --topk K --json``;
- ``api``: ``python -c "import camkit; camkit.explain(PHOTO, method=M, topk=K)"`` (the library
  applies its glibc malloc tuning on the first explain call);
- ``api, no tuning``: the same with ``CAMKIT_NO_MALLOC_TUNING=1`` (what the API did before it
  tuned the allocator itself).

Prints the median seconds of ``--rounds`` interleaved rounds (after one warm-up round) and the
ratios api / cli. Defaults: Score-CAM, top-1, on scikit-image's cat photo, 3 rounds (about a minute
on a 2-core CPU).

    .venv/bin/python bench/bench_api.py [--method scorecam] [--topk 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import markdown_table  # noqa: E402

from camkit.io.samples import sample_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="scorecam")
    ap.add_argument("--topk", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    photo = str(sample_path("chelsea"))
    env = {k: v for k, v in os.environ.items() if k != "CAMKIT_NO_MALLOC_TUNING"}
    api_code = f"import camkit; camkit.explain({photo!r}, method={args.method!r}, topk={args.topk})"
    contenders = {
        "cli": ([sys.executable, "-m", "camkit", "explain", photo, "--method", args.method, "--topk", str(args.topk), "--json"], env),
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
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.method}, top-{args.topk}, chelsea 451x300, efficientnet_lite0; process start to exit, median of "
          f"{args.rounds} interleaved rounds (seconds)\n")
    print(markdown_table(["contender", "seconds", "ratio to cli"],
                         [[k, f"{v:.2f}", f"{v / med['cli']:.2f}x"] for k, v in med.items()]))


if __name__ == "__main__":
    main()
