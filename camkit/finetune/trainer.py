"""The fine-tuning loop behind ``camkit finetune``.

One call, :func:`finetune`, does: data (:mod:`.data`) -> adapted model (:mod:`.model`) -> SGD with
Nesterov momentum or AdamW (no weight decay on biases and norm parameters) -> per-iteration schedule
(linear warm-up, then cosine to 0 or steps x0.1 at 50 % and 75 %) -> per epoch: training with
augmentation, validation with the model's eval transform, ``last.pt`` (everything needed to resume)
and ``best.pt`` (best validation accuracy; model only) written atomically, ``log.csv`` and
``training.png``. On a CUDA device: mixed precision (float16 autocast + gradient scaling) and
channels-last memory format; on the CPU: plain float32.

Reproducibility: every epoch starts from generators seeded with ``(seed, epoch)`` (shuffling order,
dropout), and each image's augmentation is seeded with ``(seed, epoch, index)``
(:class:`~camkit.finetune.data.SeededItems`), so a run resumed from ``last.pt`` after epoch k continues
exactly as the uninterrupted run; with ``deterministic=True`` torch's deterministic algorithms are
enforced too.

Several processes (``torchrun``, or a process group the caller initialised: :func:`camkit.distributed.current`):
DistributedDataParallel; a ``DistributedSampler`` (seeded, ``set_epoch`` every epoch) gives each rank
its share of the shuffled training set (one process uses the same sampler, so N processes x batch b
read the same global batches as one process x N*b); ``batch_size`` is per process and ``lr`` is the
learning rate of the global batch (DDP averages the gradients); ``sync_bn`` converts BatchNorm to
``SyncBatchNorm`` (CUDA only); each rank's dropout generator is offset by its rank; training and
validation metrics are summed over the ranks; rank 0 alone holds the folder lock and writes
checkpoints (with every rank's generator states), the log and the plot.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import Group, current
from ..errors import CamkitError, ParameterError
from ..io.run_lock import RunLock
from ..limits import check_input_size
from ..malloc_tuning import apply_malloc_tuning
from ..models.cam_model import CAMModel
from ..models.registry import get_spec
from ..models.weights import load_checkpoint, preprocess_of, torchvision_weights
from ..models.weights_arg import parse_weights
from ..preprocess import Preprocess

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
LAST, BEST, LOG, PLOT = "last.pt", "best.pt", "log.csv", "training.png"


@dataclass
class FinetuneConfig:
    """Training options (all plain values: stored in checkpoints and compared on resume).

    ``freeze_backbone=None``: freeze when the backbone is pretrained, train everything when it is
    random. ``lr=None``: 0.01 (SGD) / 0.001 (AdamW) for fine-tuning a pretrained backbone, 0.1 /
    0.002 from random init. ``weight_decay=None``: 5e-4 (SGD) / 0.05 (AdamW). ``input_size``: train
    and save the model at this square input (the weights' resize/crop ratio kept); None = the model's.
    """

    model: str = "efficientnet_lite0"
    dataset: str = "imagefolder"
    root: str = "."
    num_classes: int | None = None
    pool: str | None = None
    weights: str | None = None
    freeze_backbone: bool | None = None
    epochs: int = 10
    lr: float | None = None
    batch_size: int = 32
    workers: int = 2
    optimizer: str = "sgd"
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    weight_decay: float | None = None
    input_size: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    out: str = "runs/finetune"


# Options that may change between a run and its resumption without changing the result.
RESUME_FREE = frozenset({"workers", "root", "out"})


@dataclass
class FinetuneResult:
    model: CAMModel
    history: list[dict]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    class_names: list[str] | None
    data_description: str = ""
    extra: dict = field(default_factory=dict)


def resume_config(saved: dict, overrides: dict) -> FinetuneConfig:
    """The saved run's config; an explicitly given option that differs is a one-line error."""
    names = {f.name for f in fields(FinetuneConfig)}
    cfg = {k: v for k, v in saved.items() if k in names}
    for k, v in overrides.items():
        if v is None or k not in names:
            continue
        if k in RESUME_FREE:
            cfg[k] = v
        elif cfg.get(k) != v:
            raise ParameterError(
                k, v, f"differs from {cfg.get(k)!r}, which this run was started with; leave it out to continue the "
                "run exactly, or start a new run in another output folder",
            )
    return FinetuneConfig(**cfg)


def _seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed every generator for ``epoch``; returns the DataLoader's shuffling generator."""
    s = (seed * 1_000_003 + epoch * 7919) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    g = torch.Generator()
    g.manual_seed(s + 1)
    return g


def _worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % (2**31)
    np.random.seed(s)
    random.seed(s)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def lr_factor(it: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at iteration ``it`` (0-based) of ``total``.

    Warm-up: ``(it + 1) / warmup`` for ``it < warmup``; then cosine ``0.5 (1 + cos(pi t))`` with
    ``t = (it - warmup) / (total - warmup)``, or step: 1, 0.1 from 50 %, 0.01 from 75 % of ``total``.
    """
    if it < warmup:
        return (it + 1) / warmup
    if schedule == "cosine":
        t = (it - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return 0.1 ** sum(it >= m for m in (int(0.5 * total), int(0.75 * total)))


class _Progress:
    """Rich progress on stderr (or nothing): one bar per epoch with loss, accuracy and images/s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.console = Console(stderr=True, highlight=False)
            self._p = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  {task.fields[ips]:.1f} img/s"),
                TimeElapsedColumn(), console=self.console, transient=False,
            )

    def __enter__(self):
        if self._p:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int):
        return self._p.add_task(description, total=total, loss=0.0, acc=0.0, ips=0.0) if self._p else None

    def update(self, task, **kw) -> None:
        if self._p is not None:
            self._p.update(task, **kw)

    def print(self, text: str) -> None:
        if self._p is not None:
            self._p.console.print(text)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to ``device`` (channels-last images when asked: faster convolutions on GPUs)."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def evaluate_loader(model: CAMModel, loader, device: torch.device, channels_last: bool = False, amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` (eval mode) over ``loader``."""
    loss_sum, correct, total = evaluate_sums(model, loader, device, channels_last, amp)
    return (loss_sum / total, correct / total) if total else (float("nan"), float("nan"))


def evaluate_sums(model: CAMModel, loader, device: torch.device, channels_last: bool = False, amp: bool = False) -> tuple[float, int, int]:
    """Summed cross-entropy, number correct and number of images of ``model`` (eval mode) over ``loader``."""
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = _to_device(x, y, device, channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = model(x)
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += int(y.numel())
    return loss_sum, correct, total


def _is_pretrained(cfg: FinetuneConfig) -> bool:
    choice = parse_weights(cfg.weights)
    if choice.kind == "default":
        choice = parse_weights(get_spec(cfg.model).default_weights)
    return not choice.is_random


def finetune(
    config: FinetuneConfig,
    *,
    resume: bool = False,
    overrides: dict | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> FinetuneResult:
    """Train ``config.model`` on ``config.dataset`` (see the module doc); returns the trained model.

    ``resume=True`` continues the run in ``config.out`` from ``last.pt`` with the saved options
    (``overrides``: options the user gave explicitly; a conflicting one is an error). Without
    ``resume``, an ``out`` folder that already holds ``last.pt`` is refused rather than overwritten.
    ``on_epoch_end(row)`` is called after each epoch's checkpoint is on disk.

    The ``out`` folder is locked (:class:`~camkit.io.run_lock.RunLock`) for the whole run. Refused
    before any training: fewer than two classes, an ``input_size`` whose activations cannot fit in
    memory (:func:`camkit.limits.check_input_size`). A loss that becomes NaN or infinite stops the run
    with a :class:`~camkit.errors.ParameterError` naming ``lr`` (the usual cause); the epoch is not
    checkpointed, so ``last.pt`` keeps the previous, finite one.
    """
    out = Path(config.out)
    group = current()
    lock = RunLock(out, "camkit finetune")
    group.on_main(lambda: lock.acquire() and None)  # rank 0 holds the folder; a refusal is raised on every rank
    try:
        return _finetune_locked(config, out, resume, overrides, progress and group.is_main, on_epoch_end, group)
    finally:
        lock.release()


def _finetune_locked(config: FinetuneConfig, out: Path, resume: bool, overrides: dict | None, progress: bool,
                     on_epoch_end: Callable[[dict], None] | None, group: Group) -> FinetuneResult:
    from .checkpoint import atomic_save, make_checkpoint, read_checkpoint, rng_state, set_rng_state
    from .data import MapDataset, SeededItems, load_training_data
    from .log import plot_history, write_log
    from .model import prepare_model, set_train_mode
    from .transforms import eval_transform, train_transform

    apply_malloc_tuning()
    last_path = out / LAST
    ckpt = None
    if resume:
        if not last_path.is_file():
            raise CamkitError(f"no {LAST} in {out} to resume from; start a new run there instead")
        ckpt = read_checkpoint(last_path)
        if "optimizer" not in ckpt or "config" not in ckpt:
            raise CamkitError(f"{last_path} is not a camkit training checkpoint (no optimizer state); it cannot be resumed")
        config = resume_config(ckpt["config"], {**(overrides or {}), "out": str(out)})
        trained_on = int(ckpt.get("world_size", 1))
        if trained_on != group.world_size:
            raise CamkitError(f"{last_path} was trained on {trained_on} process(es), this run has {group.world_size}; "
                              f"resume it on {trained_on} (the global batch and the schedule depend on it)")
    elif last_path.exists():
        raise CamkitError(f"{out} already holds a training run ({LAST}); resume it or choose another output folder")
    cfg = config
    if cfg.optimizer not in OPTIMIZERS:
        raise CamkitError(f"unknown optimizer {cfg.optimizer!r}; use {' or '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise CamkitError(f"unknown schedule {cfg.schedule!r}; use {' or '.join(SCHEDULES)}")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ParameterError(name, getattr(cfg, name), "must be at least 1")
    if cfg.sync_bn and group.distributed and group.device == "cpu":
        raise ParameterError("sync_bn", True, "needs CUDA devices (torch's SyncBatchNorm synchronises on GPUs only); "
                             "leave it off on the CPU")

    pretrained = _is_pretrained(cfg)
    freeze = cfg.freeze_backbone if cfg.freeze_backbone is not None else pretrained
    lr = cfg.lr if cfg.lr is not None else {("sgd", True): 0.01, ("sgd", False): 0.1, ("adamw", True): 1e-3, ("adamw", False): 2e-3}[(cfg.optimizer, pretrained)]
    wd = cfg.weight_decay if cfg.weight_decay is not None else (5e-4 if cfg.optimizer == "sgd" else 0.05)

    prev_det = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        _seed_epoch(cfg.seed, -1)  # the new head's initialisation
        # The architecture comes from the spec; on resume the weights come from last.pt.
        spec = get_spec(cfg.model)
        probe_pre = _model_preprocess(cfg, spec)
        pre = probe_pre.with_input_size(cfg.input_size) if cfg.input_size else probe_pre
        data = load_training_data(
            cfg.dataset, cfg.root, train_transform(pre), eval_transform(pre),
            num_classes=cfg.num_classes, val_fraction=cfg.val_fraction, seed=cfg.seed,
        )
        model = prepare_model(cfg.model, data.num_classes, cfg.pool, "random" if resume else cfg.weights, freeze)
        model.preprocess = pre
        check_input_size(model, pre.crop, cfg.batch_size, gradients=not freeze)
        if ckpt is not None:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        model.categories = data.class_names

        if group.distributed:
            device = torch.device(group.device)
        else:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        use_amp = channels_last = device.type == "cuda"
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        net: torch.nn.Module = model  # what the training step calls: the model, or DDP around it
        if group.distributed:
            from torch.nn.parallel import DistributedDataParallel

            if cfg.sync_bn:
                torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BN children in place
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

        groups = _param_groups(model, wd)
        opt: torch.optim.Optimizer
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=lr)
        train_set: MapDataset = SeededItems(data.train, cfg.seed)
        sampler: torch.utils.data.DistributedSampler[int] = torch.utils.data.DistributedSampler(train_set, num_replicas=group.world_size, rank=group.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=False)
        steps = math.ceil(len(sampler) / cfg.batch_size)
        total = steps * cfg.epochs
        warmup = min(int(round(cfg.warmup_epochs * steps)), total // 2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, total, warmup, cfg.schedule))
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

        start, history, best = 0, [], None
        if ckpt is not None:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            start, history, best = int(ckpt["epoch"]), list(ckpt.get("history") or []), ckpt.get("best_val_acc")
            ranks_rng = ckpt.get("rng_ranks")
            set_rng_state(ranks_rng[group.rank] if ranks_rng else ckpt["rng"])

        val_loader = None
        if len(data.val):
            val_share = torch.utils.data.Subset(data.val, range(group.rank, len(data.val), group.world_size))
            val_loader = torch.utils.data.DataLoader(
                val_share, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
            )
        saved_cfg = {**asdict(cfg), "lr": lr, "weight_decay": wd, "freeze_backbone": freeze}
        best_path: Path | None = out / BEST if (out / BEST).is_file() else None
        out.mkdir(parents=True, exist_ok=True)
        with _Progress(progress) as bar:
            bar.print(f"{cfg.model} ({'frozen backbone' if freeze else 'all layers'}), {data.num_classes} classes, {data.description}, device {device}")
            if group.distributed:
                bar.print(f"{group.world_size} processes x batch {cfg.batch_size} = global batch {group.world_size * cfg.batch_size}; "
                          f"lr {lr:g} is the learning rate of the global batch")
            for epoch in range(start, cfg.epochs):
                g = _seed_epoch(cfg.seed, epoch)
                if group.rank:  # each rank its own dropout masks
                    torch.manual_seed(torch.initial_seed() + group.rank)
                sampler.set_epoch(epoch)
                train_set.epoch = epoch
                loader = torch.utils.data.DataLoader(
                    train_set, batch_size=cfg.batch_size, sampler=sampler, generator=g, num_workers=cfg.workers,
                    pin_memory=device.type == "cuda", worker_init_fn=_worker_init, drop_last=False,
                )
                set_train_mode(model, True, freeze)
                task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", steps)
                seen, loss_sum, correct = 0, 0.0, 0
                t0 = time.perf_counter()
                for x, y in loader:
                    x, y = _to_device(x, y, device, channels_last)
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        logits = net(x)
                        loss = F.cross_entropy(logits.float(), y)
                    if not use_amp and not torch.isfinite(loss):  # (AMP's scaler skips such steps itself)
                        raise ParameterError("lr", lr, f"is too high: the training loss became {float(loss.detach()):g} at epoch "
                                             f"{epoch + 1} step {seen // cfg.batch_size + 1}; use a lower one (e.g. {lr / 10:g})"
                                             f"{'' if epoch == start else f'; {LAST} holds epoch {epoch}'}")
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    sched.step()
                    n = int(y.numel())
                    seen += n
                    loss_sum += float(loss.detach()) * n
                    correct += int((logits.detach().argmax(1) == y).sum())
                    dt = time.perf_counter() - t0
                    bar.update(task, advance=1, loss=loss_sum / seen, acc=correct / seen, ips=seen / dt if dt > 0 else 0.0)
                seconds = time.perf_counter() - t0
                if group.distributed:  # the epoch's figures over every rank's images
                    sums = group.all_gather((seen, loss_sum, correct))
                    seen, loss_sum, correct = (sum(v) for v in zip(*sums, strict=True))
                # The last step's update can overflow even when its loss was finite: never checkpoint that.
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad):
                    raise ParameterError("lr", lr, f"is too high: the weights became non-finite during epoch {epoch + 1}; "
                                         f"use a lower one (e.g. {lr / 10:g})"
                                         f"{'' if epoch == start else f'; {LAST} holds epoch {epoch}'}")
                row = {
                    "epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"]),
                    "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                    "val_loss": None, "val_acc": None, "images_per_s": seen / seconds if seconds > 0 else 0.0,
                    "seconds": seconds,
                }
                if val_loader is not None:
                    v_loss, v_correct, v_total = evaluate_sums(model, val_loader, device, channels_last, use_amp)
                    if group.distributed:
                        v_loss, v_correct, v_total = (sum(v) for v in zip(*group.all_gather((v_loss, v_correct, v_total)), strict=True))
                    row["val_loss"], row["val_acc"] = v_loss / v_total, v_correct / v_total
                history.append(row)
                improved = row["val_acc"] is not None and (best is None or row["val_acc"] > best)
                if improved:
                    best = row["val_acc"]
                model.eval()
                ranks_rng = group.all_gather(rng_state()) if group.distributed else None

                def save(epoch: int = epoch, improved: bool = improved, best: float | None = best,
                         ranks_rng: list | None = ranks_rng) -> Path | None:
                    saved_best = None
                    if improved or (val_loader is None):
                        saved_best = atomic_save(make_checkpoint(model, cfg.model, epoch=epoch + 1, config=saved_cfg, history=history, best_val_acc=best), out / BEST)
                    ckpt = make_checkpoint(model, cfg.model, optimizer=opt, scheduler=sched, epoch=epoch + 1, config=saved_cfg,
                                           history=history, best_val_acc=best)
                    ckpt["world_size"] = group.world_size
                    if ranks_rng is not None:
                        ckpt["rng_ranks"] = ranks_rng
                    atomic_save(ckpt, last_path)
                    write_log(history, out / LOG)
                    plot_history(history, out / PLOT, title=f"{cfg.model} on {cfg.dataset}")
                    return saved_best

                saved_best = group.on_main(save)  # rank 0 writes; every rank goes on once the files are there
                if saved_best is not None:
                    best_path = saved_best
                val_txt = f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}" if row["val_acc"] is not None else ""
                bar.print(f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}{val_txt}  {row['images_per_s']:.1f} img/s")
                if on_epoch_end is not None:
                    on_epoch_end(row)
        if cfg.sync_bn and group.distributed:
            _revert_sync_batchnorm(model)
        model.eval().to("cpu")
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        return FinetuneResult(model, history, out, last_path, best_path, data.class_names, data.description)
    finally:
        if cfg.deterministic:
            torch.use_deterministic_algorithms(prev_det)


def _revert_sync_batchnorm(module: torch.nn.Module) -> None:
    """Put plain ``BatchNorm2d`` modules back (same parameters and statistics) where
    ``convert_sync_batchnorm`` put ``SyncBatchNorm``: the returned model must not need a process group."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.SyncBatchNorm):
            bn = torch.nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                bn.weight, bn.bias = child.weight, child.bias
            bn.running_mean, bn.running_var = child.running_mean, child.running_var
            bn.num_batches_tracked = child.num_batches_tracked
            bn.training = child.training
            module.add_module(name, bn)
        else:
            _revert_sync_batchnorm(child)


def _model_preprocess(cfg: FinetuneConfig, spec):
    """The Preprocess of the model's weights without loading them twice: built on a random-weights
    instance, except for torchvision weights whose transform depends on the weights entry."""
    choice = parse_weights(cfg.weights)
    if choice.path is not None:
        ck = load_checkpoint(choice.path)
        if ck.get("preprocess"):
            return Preprocess.from_dict(ck["preprocess"])
    if spec.source == "torchvision" and choice.kind in ("default", "named"):
        arch = spec.name.removesuffix("_dilated").rsplit("_gap", 1)[0].rsplit("_gmp", 1)[0]
        try:
            return preprocess_of(torchvision_weights(arch, choice))
        except Exception:  # an unknown entry is reported when the model is built
            pass
    return spec.build(weights="random", num_classes=2).preprocess
