"""``camkit evaluate`` on 2 gloo processes gives the one-process run, survives kill -9 of a rank, resumes
on any number of processes, and a bad image on one rank is skipped without holding the others.

The ranks are started by :func:`test_distributed_core.launch` (torchrun's environment, a 127.0.0.1
store). Both sides compute with one intra-op thread (torchrun's default for several processes), so
the records are compared byte for byte, not only the summary.

Run as a script (``python test_distributed_evaluate.py resume|crash OUT CSV``) this file is a rank of
a Python-API run in a process group the script initialises itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
SAMPLE = HERE.parents[2] / "shared/data/ilsvrc_val_sample"
BAD_INDEX = 5  # in batch 1 of 4-image batches: rank 1's share of 2
N_IMAGES = 25
OPTIONS = {"batch_size": 4, "tau_step": 0.05, "workers": 0, "gallery_size": 0}


def _dataset_csv(folder: Path) -> Path:
    """The 12 real photos twice (distinct ids) with a broken file at :data:`BAD_INDEX`."""
    meta = SAMPLE / "metadata/ILSVRC/test"
    labels = dict(line.split(",") for line in (meta / "class_labels.txt").read_text().split())
    rows = []
    for c in range(2):
        for line in (meta / "localization.txt").read_text().split():
            rel, *box = line.split(",")
            rows.append(f"{'./' * c}{rel},{labels[rel]},{','.join(box)}")
    bad = folder / "broken.JPEG"
    bad.write_bytes(b"this is not a JPEG file\n" * 10)
    rows.insert(BAD_INDEX, f"{bad},1,10,10,50,50")
    path = folder / "boxes.csv"
    path.write_text("\n".join(["image_path,class_index,x1,y1,x2,y2", *rows]) + "\n")
    return path


def _cli(csv_path: Path, out: Path, *extra: str, progress: bool = False) -> list[str]:
    return [sys.executable, "-m", "camkit", "evaluate", "--dataset", "csv", "--root", str(SAMPLE), "--annotations",
            str(csv_path), "--out", str(out), "--batch-size", "4", "--workers", "0", "--tau-step", "0.05",
            "--progress" if progress else "--no-progress", *extra]


def _deterministic(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "run"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, lite0):
    """The one-process run (one intra-op thread, like each rank) and its folder."""
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SAMPLE} (needs ../shared beside the repository)")
    import torch

    from camkit.datasets import read_layout
    from camkit.evaluate import evaluate

    folder = tmp_path_factory.mktemp("dist_eval")
    csv_path = _dataset_csv(folder)
    ds = read_layout("csv", SAMPLE, csv_path)  # as the CLI reads it (the summary records where from)
    assert len(ds) == N_IMAGES
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = evaluate(ds, lite0, out_dir=folder / "one", **OPTIONS)
    finally:
        torch.set_num_threads(threads)
    assert summary["n_images"] == N_IMAGES - 1 and [f["index"] for f in summary["failed"]] == [BAD_INDEX]
    return {"csv": csv_path, "ds": ds, "summary": summary, "records": (folder / "one/records.jsonl").read_bytes()}


def _check_equal(out: Path, reference: dict) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert _deterministic(summary) == _deterministic(reference["summary"])
    # every map bit-identical: the records, merged in dataset order, are the one-process file byte for byte
    assert (out / "records.jsonl").read_bytes() == reference["records"]
    assert sorted(p.name for p in out.glob("records*.jsonl")) == ["records.jsonl"]
    return summary


@pytest.mark.shared
@pytest.mark.slow
def test_two_ranks_give_the_one_process_run_and_a_bad_image_on_one_rank_is_skipped(tmp_path, reference):
    from test_distributed_core import launch

    out = tmp_path / "two"
    workers = launch(_cli(reference["csv"], out, progress=True), timeout=240, teardown=False)
    # Both ranks finish by themselves (nobody left waiting for the rank with the bad image), with the
    # "skipped" exit code.
    assert [w.returncode for w in workers] == [1, 1], [w.stderr[-2000:] for w in workers]
    summary = _check_equal(out, reference)
    assert summary["run"]["world_size"] == 2 and summary["run"]["evaluated_now"] == N_IMAGES
    assert json.loads((out / "run.json").read_text())["world_sizes"] == [2]
    # rank 0 prints the table and lists the skipped image; rank 1 prints nothing
    assert "MaxBoxAccV2" in workers[0].stdout and workers[1].stdout == ""
    assert "skipped" in workers[0].stderr and "broken.JPEG" in workers[0].stderr
    assert "skipped" not in workers[1].stderr
    # rank 0's progress bar counts every rank's images (to the end, after its own share is done); rank 1 has none
    assert f"{N_IMAGES}/{N_IMAGES}" in workers[0].stderr and "evaluating" not in workers[1].stderr


@pytest.mark.shared
@pytest.mark.slow
def test_kill_9_of_one_rank_then_resume_on_two_or_one_processes_gives_the_uninterrupted_run(tmp_path, reference):
    from test_distributed_core import launch

    from camkit.evaluate import evaluate
    from camkit.evaluate.records import read_records, shard_path

    out = tmp_path / "killed"
    shard1 = shard_path(out, 1)

    def kill_rank_1_after_a_batch(procs) -> None:
        if procs[1].poll() is None and shard1.exists() and shard1.read_bytes().count(b"\n") >= 4:
            os.kill(procs[1].pid, signal.SIGKILL)

    workers = launch(_cli(reference["csv"], out), timeout=240, while_running=kill_rank_1_after_a_batch)
    assert workers[1].returncode == -signal.SIGKILL, workers[1].stderr[-2000:]
    assert workers[0].returncode != 0  # stopped by the teardown, or by its own failed collective
    assert not (out / "summary.json").exists()
    before = {i: r for r in range(2) for i, r in read_records(shard_path(out, r)).records.items()}
    assert 4 <= len(before) < N_IMAGES
    shutil.copytree(out, tmp_path / "killed_copy")

    # Resume on 2 processes through the Python API, in a process group the script set up itself.
    workers = launch([sys.executable, str(HERE), "resume", str(out), str(reference["csv"])], timeout=240)
    assert [w.returncode for w in workers] == [0, 0], [w.stderr[-2000:] for w in workers]
    ranks = [json.loads(w.stdout.strip().splitlines()[-1]) for w in workers]
    assert ranks[0] == ranks[1]  # every rank returns the summary
    assert ranks[0]["in_memory"] == ranks[0]["resumed"] == _deterministic(reference["summary"])
    summary = _check_equal(out, reference)
    assert summary["run"]["resumed_from"] == len(before) and summary["run"]["evaluated_now"] == N_IMAGES - len(before)
    assert json.loads((out / "run.json").read_text())["world_sizes"] == [2, 2]
    merged = read_records(out / "records.jsonl").records
    assert all(merged[i] == r for i, r in before.items())  # kept, not recomputed into something else

    # Resume the same interrupted run on 1 process.
    import torch

    copy = tmp_path / "killed_copy"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate(reference["ds"], "efficientnet_lite0", out_dir=copy, resume=True, **OPTIONS)
    finally:
        torch.set_num_threads(threads)
    _check_equal(copy, reference)
    assert json.loads((copy / "run.json").read_text())["world_sizes"] == [2, 1]


@pytest.mark.shared
@pytest.mark.slow
def test_an_error_on_one_rank_stops_every_rank_naming_it_and_keeps_the_others_work(tmp_path, reference):
    from test_distributed_core import launch

    from camkit.evaluate.records import read_records, shard_path

    out = tmp_path / "crash"
    workers = launch([sys.executable, str(HERE), "crash", str(out), str(reference["csv"])], timeout=240)
    assert [w.returncode for w in workers] == [0, 0], [w.stderr[-2000:] for w in workers]
    r0, r1 = (json.loads(w.stdout.strip().splitlines()[-1]) for w in workers)
    assert r1 == {"type": "ValueError", "message": "no memory left on this device"}
    assert r0 == {"type": "RankCrashedError", "message": "rank 1 failed: ValueError: no memory left on this device"}
    # rank 0 finished its batches 0, 2, 4, 6 first: they are on disk for --resume
    assert sorted(read_records(shard_path(out, 0)).records) == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24]
    assert not (out / "summary.json").exists()


def _crash_rank(out: str, csv_path: str) -> None:
    import torch.distributed as dist

    from camkit.cam.sources import make_map_source
    from camkit.datasets import read_layout
    from camkit.distributed import RankCrashedError
    from camkit.evaluate import evaluate
    from camkit.models import load_model

    dist.init_process_group("gloo")
    model = load_model("efficientnet_lite0")
    source = make_map_source(model)

    def failing_on_rank_1(x, gt):
        if dist.get_rank() == 1:
            raise ValueError("no memory left on this device")
        return source(x, gt)

    try:
        evaluate(read_layout("csv", SAMPLE, csv_path), model, out_dir=out, map_source=failing_on_rank_1, **OPTIONS)
    except (ValueError, RankCrashedError) as e:
        print(json.dumps({"type": type(e).__name__, "message": str(e)}))
    dist.destroy_process_group()


def _resume_rank(out: str, csv_path: str) -> None:
    import torch.distributed as dist

    from camkit.datasets import read_layout
    from camkit.evaluate import evaluate

    dist.init_process_group("gloo")
    ds = read_layout("csv", SAMPLE, csv_path)
    summary = evaluate(ds, "efficientnet_lite0", out_dir=out, resume=True, **OPTIONS)
    in_memory = evaluate(ds, "efficientnet_lite0", **OPTIONS)  # no folder: the records are gathered instead
    assert dist.is_initialized()  # the caller's group is left to the caller
    dist.destroy_process_group()
    print(json.dumps({"resumed": _deterministic(summary), "in_memory": _deterministic(in_memory)}))


if __name__ == "__main__":
    if sys.argv[1] == "resume":
        _resume_rank(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "crash":
        _crash_rank(sys.argv[2], sys.argv[3])
