"""Benchmark distributed ``camkit evaluate``: scaling over processes, and rank 0's merge cost.

(a) Scaling. The real ILSVRC sample (12 photos, ../shared/data/ilsvrc_val_sample) listed ``--repeat``
    times under different ids is evaluated by the command line (``python -m camkit evaluate``) as
    1 process x 2 intra-op threads and as 2 processes x 1 thread (one gloo process group on 127.0.0.1,
    started the way torchrun starts its workers); by default each process reads its images on its own
    helper threads (one per intra-op thread: camkit's default), or with ``--workers N`` half of N
    DataLoader workers per process, so both use the same CPU. Rounds are interleaved; the best of ``--rounds`` is kept. Reported:
    images/s of the loop (``summary.json``'s ``run.images_per_s``, measured on rank 0 from the start
    of the loop to the merged records) and of the whole command, and the scaling efficiency
    ``(X_2 / X_1) / (P_2 T_2 / (P_1 T_1))``: throughput ratio over the ratio of threads used
    (processes x threads; 1 here), so 1.0 means two processes get exactly as much done with the same
    cores as one process with both; best round over best round, and the median of the rounds' own ratios.
(b) Merge cost. 10,000 records made by ``image_record`` (100 taus, top-5, like a real ILSVRC run;
    50 distinct ones repeated under their own indices) are written as a 2-rank run writes them
    (batches of 32 dealt out in turn, one fsync'd append per batch) and folded into ``records.jsonl``
    by ``camkit.evaluate.records.merge_shards``, as rank 0 does at the end; best of 3. Projected to
    50,000 images against (a)'s two-process throughput.

Prints Markdown tables. Usage: ``python bench/bench_distributed.py [--repeat 20] [--rounds 2] [--skip-scaling]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def repeated_csv(folder: Path, copies: int) -> Path:
    """A CSV dataset listing the 12 sample photos ``copies`` times (ids differ, files are the same)."""
    meta = SAMPLE / "metadata/ILSVRC/test"
    labels = dict(line.split(",") for line in (meta / "class_labels.txt").read_text().split())
    rows = ["image_path,class_index,x1,y1,x2,y2"]
    for c in range(copies):
        for line in (meta / "localization.txt").read_text().split():
            rel, *box = line.split(",")
            rows.append(f"{'./' * c}{rel},{labels[rel]},{','.join(box)}")
    path = folder / "boxes.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def evaluate_argv(csv_path: Path, out: Path, batch_size: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "camkit", "evaluate", "--dataset", "csv", "--root", str(SAMPLE),
            "--annotations", str(csv_path), "--out", str(out), "--batch-size", str(batch_size),
            "--workers", str(workers), "--no-progress"]


def run_ranks(argv: list[str], nprocs: int, threads: int, timeout: float = 1800.0) -> float:
    """Run ``argv`` as ``nprocs`` ranks (``threads`` intra-op threads each); returns wall seconds.

    For ``nprocs > 1`` this hosts the rendezvous store on 127.0.0.1 and sets the variables torchrun
    gives its workers (torchrun's own store would listen on every interface).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for v in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    store = None
    if nprocs > 1:
        import torch.distributed as dist

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        store = dist.TCPStore("127.0.0.1", port, nprocs, True, timeout=timedelta(seconds=timeout),
                              wait_for_workers=False, master_listen_fd=sock.detach())
        env.update({"WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs), "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True", "GLOO_SOCKET_IFNAME": "lo"})
    t = time.perf_counter()
    procs = [subprocess.Popen(argv, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)} if nprocs > 1 else env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for r in range(nprocs)]
    try:
        errs = [p.communicate(timeout=timeout)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seconds = time.perf_counter() - t
    del store
    for p, err in zip(procs, errs, strict=True):
        if p.returncode not in (0, 1):  # 1: finished with skipped images (none expected here)
            sys.exit(f"evaluate failed ({p.returncode}): {err.decode()[-2000:]}")
    return seconds


def scaling(args, tmp: Path) -> tuple[list[str], float]:
    csv_path = repeated_csv(tmp, args.repeat)
    n = 12 * args.repeat
    configs = {(1, 2): args.workers, (2, 1): args.workers // 2}  # (processes, threads) -> workers per process
    loop: dict = {c: [] for c in configs}
    wall: dict = {c: [] for c in configs}
    run_ranks(evaluate_argv(csv_path, tmp / "warm", args.batch_size, 0) + ["--limit", "32"], 1, 2)  # disk cache
    for r in range(args.rounds):
        for (procs, threads), workers in configs.items():
            out = tmp / f"run-{procs}x{threads}-{r}"
            wall[(procs, threads)].append(run_ranks(evaluate_argv(csv_path, out, args.batch_size, workers), procs, threads))
            summary = json.loads((out / "summary.json").read_text())
            loop[(procs, threads)].append(summary["run"]["images_per_s"])
            print(f"round {r + 1}: {procs} x {threads}: loop {loop[(procs, threads)][-1]:.1f} img/s, "
                  f"command {n / wall[(procs, threads)][-1]:.1f} img/s", file=sys.stderr)
            shutil.rmtree(out)
    best = {c: (max(loop[c]), n / min(wall[c])) for c in configs}
    x1, x2 = best[(1, 2)], best[(2, 1)]
    threads_ratio = (2 * 1) / (1 * 2)
    # each round's ratio compares runs made minutes apart: steadier than best / best on a shared machine
    per_round_loop = [b / a / threads_ratio for a, b in zip(loop[(1, 2)], loop[(2, 1)], strict=True)]
    per_round_wall = [a / b / threads_ratio for a, b in zip(wall[(1, 2)], wall[(2, 1)], strict=True)]
    rows = [
        f"| {n} images, batch {args.batch_size} | workers/process | loop img/s | command img/s |",
        "|---|---|---|---|",
        f"| 1 process x 2 threads | {configs[(1, 2)]} | {x1[0]:.1f} | {x1[1]:.1f} |",
        f"| 2 processes x 1 thread (gloo) | {configs[(2, 1)]} | {x2[0]:.1f} | {x2[1]:.1f} |",
        (f"| scaling efficiency (throughput ratio / thread ratio {threads_ratio:g}), best / best | | "
         f"{x2[0] / x1[0] / threads_ratio:.2f} | {x2[1] / x1[1] / threads_ratio:.2f} |"),
        (f"| scaling efficiency, median of the rounds' ratios ({', '.join(f'{r:.2f}' for r in per_round_loop)}) | | "
         f"{statistics.median(per_round_loop):.2f} | {statistics.median(per_round_wall):.2f} |"),
    ]
    return rows, x2[0]


def merge_cost(images_per_s: float | None) -> list[str]:
    import numpy as np

    from camkit.evaluate.protocol import Protocol, image_record
    from camkit.evaluate.records import RecordWriter, merge_shards, shard_path

    rng = np.random.default_rng(0)
    protocol = Protocol()
    distinct = []
    for k in range(50):
        maps = rng.standard_normal((6, 7, 7)).astype(np.float32)
        classes = np.array([3, *rng.choice(1000, 5, replace=False)])
        distinct.append(image_record(protocol, maps, classes, np.sort(rng.random(5))[::-1], np.array([[10, 20, 150, 200]]),
                                     index=k, image_id="", width=500, height=375).to_dict())
    n, batch, world = 10_000, 32, 2
    times, size = [], 0
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            writers = [RecordWriter(shard_path(d, r)) for r in range(world)]
            for b, start in enumerate(range(0, n, batch)):
                writers[b % world].write([{**distinct[i % 50], "i": i, "id": f"val/ILSVRC2012_val_{i + 1:08d}.JPEG"}
                                          for i in range(start, min(start + batch, n))])
            for w in writers:
                w.close()
            size = sum(p.stat().st_size for p in Path(d).iterdir())
            t = time.perf_counter()
            assert merge_shards(d) == n
            times.append(time.perf_counter() - t)
    per_10k = min(times)
    rows = [
        f"| merge of {n:,} records ({size / 1e6:.1f} MB, 2 shards) | seconds |",
        "|---|---|",
        f"| rank 0 folding the shards into records.jsonl | {per_10k:.3f} |",
    ]
    if images_per_s:
        at_50k = 5 * per_10k
        evaluate_s = 50_000 / images_per_s
        rows.append(f"| at 50,000 images: {at_50k:.2f} s of {evaluate_s:.0f} s evaluating (2 processes here) | "
                    f"{100 * at_50k / evaluate_s:.2f} % |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="copies of the 12 photos")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers in total (split over the processes); "
                   "0: camkit's default, the images read on each process's helper threads")
    p.add_argument("--skip-scaling", action="store_true", help="only the merge cost")
    args = p.parse_args()
    lines: list[str] = []
    ips = None
    if not args.skip_scaling:
        if not (SAMPLE / "val").is_dir():
            sys.exit(f"the ILSVRC sample is not at {SAMPLE}")
        with tempfile.TemporaryDirectory() as d:
            rows, ips = scaling(args, Path(d))
        lines += rows + [""]
    lines += merge_cost(ips)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
