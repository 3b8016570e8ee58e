"""Running camkit under ``torch.distributed``: the process group, and which share of the work each rank does.

camkit does not start processes of its own. A launcher does (``torchrun``, which SLURM's ``srun`` can
start on every node) and sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
in each process's environment. :func:`process_group` reads them, joins the one process group (``gloo``
on CPU, ``nccl`` on CUDA with the device ``cuda:LOCAL_RANK``), and hands back a :class:`Group`; without
those variables it hands back the one-process group and nothing distributed happens. A process group
the caller initialised already (``torch.distributed.init_process_group`` in a training script) is used
as it is and left open (:func:`current`).

Failure model. Every wait is bounded by the group's timeout (``timeout_s``; default 30 minutes, the
``CAMKIT_DIST_TIMEOUT`` environment variable in seconds overrides it), so a rank that dies or hangs
can delay the others, never block them forever. Work that can fail on one rank only is followed by
:meth:`Group.raise_if_any_failed`: every rank contributes its error (or None) to one gather, so every
rank learns of a failure at the same point and raises; the failing rank re-raises its own error, the
others a :class:`RankFailedError` (a :class:`~camkit.errors.CamkitError`, when the failure was one) or
:class:`RankCrashedError` (anything else) naming the rank and its one-line message, which rank 0's
front end prints. A rank killed outright (``kill -9``, out of memory) makes the others' next collective
fail at once (gloo notices the closed connection) or at the timeout; ``torchrun`` also stops the
remaining ranks when one exits non-zero.

Work partition. :func:`shard` gives rank ``r`` of ``W`` the items ``r, r + W, r + 2W, ...`` of a list
(for evaluation: the list of batches still to do). Striding balances the load better than contiguous
blocks: datasets are usually stored in some order that correlates with cost (ILSVRC val folders and
OpenImages by class, photos of one source with one resolution), and the last batch is short, so
blocks would give one rank all the large photos or the short tail; strided shares sample the whole
list evenly, so the ranks differ by at most one item and the content-dependent cost (decode size,
Score-CAM's constant channels skipped) averages out. The partition depends only on the list, the
rank and the world size, so every rank computes it without talking to the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from camkit.errors import CamkitError, ParameterError

T = TypeVar("T")

TIMEOUT_ENV = "CAMKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(CamkitError):
    """The process group cannot be set up, or the other ranks did not answer within the timeout."""


class RankFailedError(CamkitError):
    """Another rank stopped on a user-facing error (bad input, unreadable data); the message names it."""

    def __init__(self, rank: int, message: str) -> None:
        self.rank = rank
        super().__init__(f"rank {rank}: {message}")


class RankCrashedError(RuntimeError):
    """Another rank stopped on an unexpected error (a bug); the message names the rank and the error."""

    def __init__(self, rank: int, message: str) -> None:
        self.rank = rank
        super().__init__(f"rank {rank} failed: {message}")


def timeout_seconds(timeout_s: float | None = None) -> float:
    """``timeout_s`` if given, else ``$CAMKIT_DIST_TIMEOUT`` (seconds), else 30 minutes."""
    if timeout_s is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            timeout_s = float(raw)
        except ValueError:
            raise DistributedError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 600.") from None
    if not timeout_s > 0:
        raise ParameterError("timeout_s", timeout_s, "must be a positive number of seconds")
    return float(timeout_s)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: ``items[rank::world_size]`` (see the module docstring for why strided).

    The shares of ranks ``0 .. world_size - 1`` are disjoint, cover ``items``, keep its order, and
    differ in length by at most one.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ParameterError("rank", rank, f"must be in [0, {world_size}) for world_size={world_size}")
    return list(items[rank::world_size])


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several: ``WORLD_SIZE`` > 1 in the environment."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def main_by_environment() -> bool:
    """Whether this process will be rank 0 (the one that writes the outputs), read from the launcher's ``RANK``
    before anything is imported: true without a launcher."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _describe(error: BaseException) -> tuple[str, bool]:
    """A one-line description of ``error`` and whether it is a user-facing camkit error."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, (RankFailedError, CamkitError)):
        return text, True
    return f"{type(error).__name__}: {text}" if text else type(error).__name__, False


@dataclass(frozen=True)
class Group:
    """The ranks of one job and the collectives camkit uses between them.

    The default instance is the one-process group (rank 0 of 1): every collective returns at once
    and nothing imports ``torch.distributed``. ``device`` is where this rank computes (``"cpu"`` or
    ``"cuda:LOCAL_RANK"``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that writes the shared outputs and prints."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's part of ``items`` (:func:`shard`)."""
        return shard(items, self.rank, self.world_size)

    # Collectives. Each is bounded by the timeout; a peer that died or hung becomes a DistributedError.

    def _collective(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (RankFailedError, RankCrashedError):
            raise
        except RuntimeError as e:  # gloo/nccl report a dead peer or a timeout as RuntimeError subclasses
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"rank {self.rank}: {what} failed ({first}); another rank died or took longer than "
                f"{self.timeout_s:g} s ({TIMEOUT_ENV}); see that rank's output, then rerun (resuming where the command can)."
            ) from None

    def barrier(self) -> None:
        """Wait for every rank (at most the timeout; gloo names the ranks that did not arrive)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        def wait() -> None:
            if self.backend == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=self.timeout_s), wait_all_ranks=True)
            else:
                dist.barrier()

        self._collective("barrier", wait)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), indexed by rank, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size

        def gather() -> list[Any]:
            dist.all_gather_object(out, obj)
            return out

        return self._collective("gathering results", gather)

    def broadcast(self, obj: Any = None, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (picklable) on every rank (other ranks' ``obj`` is ignored)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]

        def bcast() -> Any:
            dist.broadcast_object_list(box, src=src)
            return box[0]

        return self._collective("broadcast", bcast)

    def raise_if_any_failed(self, error: BaseException | None = None) -> None:
        """Collective: every rank reports ``error`` (None when its work succeeded); if any rank failed,
        every rank raises.

        The failing rank re-raises ``error`` itself; the others raise :class:`RankFailedError` (the
        failure was a :class:`~camkit.errors.CamkitError`) or :class:`RankCrashedError` naming the
        lowest failing rank and its one-line message.
        """
        reports = self.all_gather(None if error is None else _describe(error))
        if error is not None:
            raise error
        for rank, report in enumerate(reports):
            if report is not None:
                message, user_facing = report
                raise (RankFailedError if user_facing else RankCrashedError)(rank, message)

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank, then :meth:`raise_if_any_failed`; returns this rank's result."""
        try:
            result = fn()
        except Exception as e:
            self.raise_if_any_failed(e)
            raise  # unreachable: the line above re-raises e
        self.raise_if_any_failed(None)
        return result

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result (picklable) to every rank; an error it raises is
        raised on every rank (as itself on rank 0, as :class:`RankFailedError`/:class:`RankCrashedError` elsewhere)."""
        if not self.distributed:
            return fn()
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - relayed to every rank and re-raised below
                error = e
        outcome = self.broadcast((result, None if error is None else _describe(error)))
        if error is not None:
            raise error
        value, report = outcome
        if report is not None:
            message, user_facing = report
            raise (RankFailedError if user_facing else RankCrashedError)(0, message)
        return value


SINGLE = Group()


def current(timeout_s: float | None = None) -> Group:
    """The :class:`Group` of the process group already initialised in this process, or the one-process group.

    Nothing is initialised here: this is what the Python API calls, so a script that set up
    ``torch.distributed`` itself gets distributed behaviour, and any other caller none.
    """
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch builds without distributed support
        return SINGLE
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    backend = str(dist.get_backend())
    device = "cpu"
    if backend == "nccl":
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    return Group(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0") or 0),
        backend=backend,
        device=device,
        timeout_s=timeout_seconds(timeout_s),
    )


def _launch_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's variables, checked."""
    missing = [v for v in LAUNCH_VARS if not os.environ.get(v)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} not set; start the job with torchrun "
            "(it sets them all), or unset WORLD_SIZE for one process."
        )
    try:
        rank, world, local = (int(os.environ[v]) for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the job with torchrun.") from None
    if not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank} is outside WORLD_SIZE={world}; start the job with torchrun.")
    return rank, world, local


@contextmanager
def process_group(backend: str | None = None, timeout_s: float | None = None) -> Iterator[Group]:
    """Join the job's process group for the duration of the ``with`` block.

    - A process group is already initialised: use it, leave it open at exit.
    - The launcher's variables say ``WORLD_SIZE`` > 1: ``init_process_group`` with ``backend`` (default
      ``nccl`` when CUDA is available, else ``gloo``) through the ``env://`` rendezvous and the bounded
      timeout; on CUDA this rank uses ``cuda:LOCAL_RANK``. The group is destroyed at exit, also on error.
    - Otherwise: the one-process group.
    """
    timeout = timeout_seconds(timeout_s)
    if not launched():
        yield current(timeout)
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; install a standard PyTorch build or run one process.")
    if dist.is_initialized():
        yield current(timeout)
        return
    rank, world, local = _launch_env()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = "cpu"
    device_id = None
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} CUDA device(s); "
                "start at most that many processes per node (torchrun --nproc-per-node)."
            )
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
        device_id = torch.device(device)
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout), device_id=device_id)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DistributedError(
            f"rank {rank} could not join the process group at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} "
            f"({first}); check the rendezvous address and that all {world} processes started."
        ) from None
    try:
        yield Group(rank=rank, world_size=world, local_rank=local, backend=backend, device=device, timeout_s=timeout)
    finally:
        dist.destroy_process_group()
