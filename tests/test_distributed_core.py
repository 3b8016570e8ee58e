"""camkit.distributed: the process group, the collectives, failure propagation and the work partition.

Multi-process tests run real gloo process groups of 2 CPU processes. :func:`launch` plays the part of
torchrun's agent: it hosts the rendezvous store on 127.0.0.1 only (torchrun's own store listens on
every interface), starts the workers with the variables torchrun gives them (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``, ``TORCHELASTIC_USE_AGENT_STORE``, one intra-op thread),
and, as torchrun does, stops the remaining workers once one exits non-zero. Every wait is bounded.

Run as a script (``python test_distributed_core.py SCENARIO``) this file is the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()


@dataclass
class Worker:
    rank: int
    returncode: int | None
    stdout: str
    stderr: str


def launch(
    argv: list[str],
    nprocs: int = 2,
    *,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    dist_timeout: float = 60.0,
    teardown: bool = True,
    while_running: Callable[[list[subprocess.Popen]], None] | None = None,
    cwd: str | Path | None = None,
    threads: int = 1,
) -> list[Worker]:
    """Run ``argv`` as ``nprocs`` ranks of one job on this machine, like ``torchrun --nproc-per-node``.

    ``teardown``: once a worker exits non-zero, SIGTERM the others (then SIGKILL after 5 s), as
    torchrun does. ``threads``: intra-op threads per worker (``OMP_NUM_THREADS``). ``while_running(procs)``
    is called every 20 ms until all have exited (e.g. to kill one). Every worker is killed at ``timeout``
    and the test fails.
    """
    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, nprocs, True, timeout=timedelta(seconds=timeout),
                          wait_for_workers=False, master_listen_fd=sock.detach())  # the store owns the socket
    base = {
        **os.environ, **(env or {}),
        "WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs), "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True",
        "GLOO_SOCKET_IFNAME": "lo", "CAMKIT_DIST_TIMEOUT": str(dist_timeout),
    }
    base["OMP_NUM_THREADS"] = str(threads)  # torchrun's default for several processes is 1
    logs = tempfile.TemporaryDirectory()
    procs, files = [], []
    for r in range(nprocs):
        out = open(Path(logs.name) / f"{r}.out", "w+")  # noqa: SIM115 - closed in the finally below
        err = open(Path(logs.name) / f"{r}.err", "w+")  # noqa: SIM115
        files.append((out, err))
        procs.append(subprocess.Popen(argv, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                                      stdout=out, stderr=err, cwd=cwd))
    deadline = time.monotonic() + timeout
    stop_at: float | None = None
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise AssertionError(f"the {nprocs} ranks did not finish within {timeout} s")
            if while_running is not None:
                while_running(procs)
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if teardown and failed and stop_at is None:
                stop_at = time.monotonic() + 5.0
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            if stop_at is not None and time.monotonic() > stop_at:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.02)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        result = []
        for r, (p, (out, err)) in enumerate(zip(procs, files, strict=True)):
            out.seek(0)
            err.seek(0)
            result.append(Worker(r, p.returncode, out.read(), err.read()))
            out.close()
            err.close()
        logs.cleanup()
        del store
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# The partition and the one-process group (no processes).


def test_shard_is_a_strided_disjoint_cover_with_lengths_within_one():
    from camkit.distributed import shard

    items = list(range(23))
    for world in (1, 2, 3, 4, 7, 23, 30):
        shares = [shard(items, r, world) for r in range(world)]
        assert sorted(x for s in shares for x in s) == items
        assert all(s == sorted(s) for s in shares)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert shares[0][:2] == items[0:2 * world:world][:2]
    assert shard(["a", "b", "c", "d", "e"], 1, 2) == ["b", "d"]


def test_shard_rejects_a_rank_outside_the_world():
    from camkit.distributed import shard
    from camkit.errors import ParameterError

    with pytest.raises(ParameterError, match="rank=2"):
        shard([1, 2, 3], 2, 2)


def test_without_a_launcher_the_group_is_one_process(monkeypatch):
    from camkit.distributed import Group, process_group
    from camkit.errors import CamkitError

    for v in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(v, raising=False)
    with process_group() as g:
        assert g == Group() and not g.distributed and g.is_main
        assert g.all_gather(5) == [5] and g.broadcast("x") == "x" and g.on_main(lambda: 3) == 3
        assert g.share([1, 2, 3]) == [1, 2, 3]
        g.barrier()
        g.raise_if_any_failed(None)
        with pytest.raises(CamkitError, match="own"):
            g.raise_if_any_failed(CamkitError("own"))
    import torch.distributed as dist

    assert not dist.is_initialized()


def test_timeout_comes_from_the_environment(monkeypatch):
    from camkit.distributed import DEFAULT_TIMEOUT_S, DistributedError, timeout_seconds

    monkeypatch.delenv("CAMKIT_DIST_TIMEOUT", raising=False)
    assert timeout_seconds() == DEFAULT_TIMEOUT_S and timeout_seconds(5) == 5.0
    monkeypatch.setenv("CAMKIT_DIST_TIMEOUT", "12.5")
    assert timeout_seconds() == 12.5
    monkeypatch.setenv("CAMKIT_DIST_TIMEOUT", "soon")
    with pytest.raises(DistributedError, match="CAMKIT_DIST_TIMEOUT"):
        timeout_seconds()


def test_a_half_set_launch_environment_is_one_line_error(monkeypatch):
    from camkit.distributed import DistributedError, process_group

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR"), process_group():
        pass


# ------------------------------------------------------------------------------------------------
# Two gloo processes.


def _worker(scenario: str) -> None:
    from camkit.distributed import RankCrashedError, RankFailedError, process_group
    from camkit.errors import CamkitError

    out: dict = {}
    if scenario == "collectives":
        import torch.distributed as dist

        with process_group() as g:
            out["group"] = [g.rank, g.world_size, g.local_rank, g.backend, g.device, g.timeout_s]
            out["gather"] = g.all_gather({"r": g.rank, "sq": g.rank ** 2})
            out["bcast"] = g.broadcast(f"from {g.rank}")
            out["main_pid"] = g.on_main(lambda: os.getpid())
            out["share"] = g.share(list(range(7)))
            g.barrier()
            out["initialised_inside"] = dist.is_initialized()
            for kind in ("camkit", "crash", "main"):

                def work(kind: str = kind) -> int:
                    if kind == "camkit" and g.rank == 1:
                        raise CamkitError("image x.jpg is truncated; re-download it")
                    if kind == "crash" and g.rank == 1:
                        raise ValueError("boom")
                    return g.rank

                try:
                    if kind == "main":
                        g.on_main(lambda: (_ for _ in ()).throw(CamkitError("run.json belongs to another run")))
                    else:
                        g.run(work)
                    out[kind] = "ok"
                except (RankFailedError, RankCrashedError) as e:
                    out[kind] = [type(e).__name__, e.rank, str(e)]
                except (CamkitError, ValueError) as e:
                    out[kind] = ["own", type(e).__name__, str(e)]
        out["initialised_after"] = dist.is_initialized()
    elif scenario == "late":
        from camkit.distributed import DistributedError

        with process_group() as g:
            g.barrier()
            if g.rank == 1:
                time.sleep(120)
            t = time.monotonic()
            try:
                g.all_gather("done")
            except DistributedError as e:
                out["error"] = str(e)
            out["waited"] = time.monotonic() - t
    elif scenario == "dies":  # in a group the script initialised itself: process_group() uses it, leaves it open
        import torch.distributed as dist

        from camkit.distributed import DistributedError, current

        dist.init_process_group("gloo")
        with process_group() as g:
            out["group"] = [g.rank, g.world_size, g.backend]
            out["sum"] = sum(g.all_gather(g.rank + 1))
            if g.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            t = time.monotonic()
            try:
                g.all_gather("done")
            except DistributedError as e:
                out["error"] = str(e)
            out["waited"] = time.monotonic() - t
        out["still_initialised"] = dist.is_initialized()
        out["current"] = current().world_size
        # What camkit does is over. The script leaves the group with its dead peer open (that is what is
        # tested); torch's gloo threads may then abort the interpreter's teardown ("terminate called without
        # an active exception", SIGABRT), which is torch's exit, not camkit's: leave without it.
        print(json.dumps(out), flush=True)
        os._exit(0)
    print(json.dumps(out))


def _results(workers: list[Worker]) -> list[dict]:
    return [json.loads(w.stdout.strip().splitlines()[-1]) for w in workers]


@pytest.mark.slow
def test_two_ranks_gather_broadcast_share_propagate_failures_and_destroy_their_group():
    workers = launch([sys.executable, str(HERE), "collectives"], timeout=90)
    assert [w.returncode for w in workers] == [0, 0], [w.stderr[-1500:] for w in workers]
    r0, r1 = _results(workers)
    assert r0["group"] == [0, 2, 0, "gloo", "cpu", 60.0] and r1["group"][:3] == [1, 2, 1]
    assert r0["gather"] == r1["gather"] == [{"r": 0, "sq": 0}, {"r": 1, "sq": 1}]
    assert r0["bcast"] == r1["bcast"] == "from 0"
    assert r0["main_pid"] == r1["main_pid"]
    assert r0["share"] == [0, 2, 4, 6] and r1["share"] == [1, 3, 5]
    assert r0["initialised_inside"] and not r0["initialised_after"] and not r1["initialised_after"]
    # A failure on one rank is raised on every rank, naming it. The failing rank raises its own error, the others name it (a camkit error stays one, a bug stays one).
    assert r1["camkit"] == ["own", "CamkitError", "image x.jpg is truncated; re-download it"]
    assert r0["camkit"] == ["RankFailedError", 1, "rank 1: image x.jpg is truncated; re-download it"]
    assert r1["crash"] == ["own", "ValueError", "boom"]
    assert r0["crash"] == ["RankCrashedError", 1, "rank 1 failed: ValueError: boom"]
    assert r0["main"] == ["own", "CamkitError", "run.json belongs to another run"]
    assert r1["main"] == ["RankFailedError", 0, "rank 0: run.json belongs to another run"]


@pytest.mark.slow
def test_a_rank_that_never_arrives_costs_the_timeout_not_a_hang():
    started = time.monotonic()
    workers = launch([sys.executable, str(HERE), "late"], timeout=90, dist_timeout=4, teardown=False,
                     while_running=lambda procs: procs[0].poll() is not None and procs[1].poll() is None and procs[1].kill())
    assert workers[0].returncode == 0, workers[0].stderr[-1500:]
    r0 = _results(workers[:1])[0]
    assert "another rank died or took longer than 4 s" in r0["error"]
    assert 3.5 <= r0["waited"] < 30
    assert time.monotonic() - started < 80


@pytest.mark.slow
def test_a_killed_rank_fails_the_others_next_collective_in_a_group_the_caller_initialised():
    workers = launch([sys.executable, str(HERE), "dies"], timeout=90, dist_timeout=60, teardown=False)
    assert workers[1].returncode == -signal.SIGKILL
    assert workers[0].returncode == 0, workers[0].stderr[-1500:]
    r0 = _results(workers[:1])[0]
    assert r0["group"] == [0, 2, "gloo"] and r0["sum"] == 3  # the caller's group, used as it is
    assert "another rank died" in r0["error"]
    assert r0["waited"] < 20  # noticed from the closed connection, long before the 60 s timeout
    assert r0["still_initialised"] and r0["current"] == 2  # and left open for the caller


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    _worker(sys.argv[1])
