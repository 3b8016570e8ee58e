"""``camkit evaluate``: localization benchmark on ILSVRC / CUB / wsolevaluation metadata (boxes, or OpenImages
masks for PxAP) / a CSV of boxes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer

from .common import err_console, fail, one_line_errors, out_console

#: The layouts of --dataset (camkit.datasets.LAYOUTS; spelled here so that the CLI starts without numpy).
DATASET_KINDS = ("ilsvrc", "cub", "wsol", "csv")


@one_line_errors
def evaluate_command(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Layout: ilsvrc (XML, Kaggle CSV or wsolevaluation, auto-detected), cub, wsol, csv."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder (images are found relative to it)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="Boxes file/folder: XML folder, LOC_val_solution.csv, a wsolevaluation split folder, or the CSV for --dataset csv."),
    split: str | None = typer.Option(None, "--split", help="cub: test/train/all; wsol: the metadata split folder (default test)."),
    mask_root: Path | None = typer.Option(None, "--mask-root", help="wsol with OpenImages masks: the folder the mask paths in localization.txt are relative to (default: --root)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name (see `camkit models`); default: the embedded efficientnet_lite0."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Checkpoint file or a torchvision weights name."),
    input_size: int = typer.Option(224, "--input-size", help="Square input the photos are squashed to (WSOL protocol)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    workers: int = typer.Option(0, "--workers", min=0, help="0: images are read on the helper threads between forwards (fastest when the forward runs on the CPU); N: N DataLoader processes read ahead while the forward runs (a GPU forward)."),
    tau_step: float = typer.Option(0.01, "--tau-step", help="CAM threshold grid np.arange(0, 1, step) (wsolevaluation: 0.01; 0.001 in training code)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    out: Path = typer.Option(Path("camkit-eval"), "--out", "-o", help="Output folder: summary.json, per_image.csv, plots, report.md."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out (same dataset, model and options)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary JSON on stdout instead of the table."),
    method: str | None = typer.Option(None, "--method", help="cam (exact; the default where the head allows it, else gradcam), gradcam, gradcam++, scorecam, ablationcam, ... (every method: the README's methods table)."),
    layer: list[str] | None = typer.Option(None, "--layer", help="Target layer for non-CAM methods (module name); repeat to fuse several; default: automatic."),
    smooth: str | None = typer.Option(None, "--smooth", help="aug (test-time flips x scales, mapped back exactly) or eigen (first principal component)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the methods that draw noise or random maps (each batch starts from it)."),
    sanity: bool = typer.Option(False, "--sanity", help="Also run the cascading model-randomization sanity check (Adebayo et al. 2018) of the method on the first --sanity-images images: sanity.json/.csv/.png in --out."),
    sanity_images: int = typer.Option(8, "--sanity-images", min=1, max=256, help="Images the sanity check explains (one map per randomized block each)."),
    faithfulness: bool = typer.Option(False, "--faithfulness", help="Also measure deletion/insertion AUC, average drop and increase in confidence (slow: ~450 forwards per image)."),
    faithfulness_steps: int = typer.Option(224, "--faithfulness-steps", min=2, help="Deletion/insertion steps (RISE: 224)."),
) -> None:
    """Score CAM localization: MaxBoxAcc, MaxBoxAccV2, top-1/top-5/GT-known loc, PxAP on masks (wsolevaluation protocol)."""
    from camkit.distributed import main_by_environment
    from camkit.evaluate.figure_process import discard_early, prefetch_thumbnails_early, start_early

    if main_by_environment():  # the process that writes the outputs (rank 0 under torchrun)
        start_early()  # the figure process does its imports while this one imports torch, below
        if dataset is not None and root is not None:  # and then the report's thumbnails
            prefetch_thumbnails_early(dataset, root, annotations, split, mask_root, limit)
    try:
        from camkit.distributed import process_group
        from camkit.evaluate import evaluate
        from camkit.models import load_model

        # Under torchrun (WORLD_SIZE > 1) every process runs this command: one process group, the batches
        # dealt out to the ranks, rank 0 writing the outputs and printing (camkit.distributed).
        with process_group() as group:
            if dataset is None:
                raise fail(f"--dataset is required: one of {', '.join(DATASET_KINDS)}")
            if root is None:
                raise fail("--root is required: the dataset folder (e.g. --root ILSVRC2012 holding val/ and the boxes)")
            from camkit.datasets import read_layout

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = read_layout(dataset, root, annotations, split, mask_root)
            for w in caught if group.is_main else ():
                err_console.print(f"[yellow]warning:[/] {w.message}", soft_wrap=True)
            from camkit.cam.methods import check_smooth, default_method, layer_spec, method_info

            layers, smooth = layer_spec(layer), check_smooth(smooth)
            if method is not None:
                method = method_info(method).name  # an unknown method fails before any work
            m = load_model(model, weights)
            if method == "cam" and getattr(m, "cam_kind", "exact") == "gradient":
                raise fail(f"{m.name} has no pool+linear head, so plain CAM does not apply; pass --method gradcam (or another method)")
            method = method or default_method(m, layers)
            from camkit.evaluate.rundir import ResumeError

            try:
                with _progress_bar(progress and group.is_main) as report:
                    summary = evaluate(ds, m, input_size=input_size, batch_size=batch_size, workers=workers, tau_step=tau_step,
                                       limit=limit, out_dir=out, resume=resume, progress=report, method=method, layer=layers,
                                       smooth=smooth, seed=seed,
                                       faithfulness=faithfulness, faithfulness_steps=faithfulness_steps)
            except KeyboardInterrupt:
                # Finished batches are on disk (fsync'd); the DataLoader's workers were shut down on the way out.
                raise fail(f"interrupted; the images done so far are kept in {out}: run the same command with --resume to "
                           "continue", 130) from None
            except ResumeError as e:
                if e.differs is None:
                    raise fail(f"{out} already holds results (records.jsonl); pass --resume to continue it, or another --out") from None
                raise fail(f"--resume: {out} holds a run with a different {', '.join(e.differs)}; use the same dataset, model "
                           "and options (--batch-size included), or another --out") from None
            checked = _sanity_check(ds, m, method, layers, smooth, summary, out, sanity_images, seed, progress) if sanity and group.is_main else None
            if checked is not None:
                summary["sanity"] = {k: v for k, v in checked.to_dict().items() if k != "per_image"}
            if not group.is_main:  # rank 0 prints; every rank exits with the same code
                if summary["n_failed"]:
                    raise typer.Exit(1)
                return
            if as_json:
                out_console.print_json(json.dumps({k: v for k, v in summary.items() if k not in ("curves", "pxap_curve")}))
            else:
                _print_summary(summary, out)
                if checked is not None:
                    from .sanity_cmd import print_sanity_table

                    print_sanity_table(checked, out)
            if summary["n_failed"]:
                for f in summary["failed"]:
                    err_console.print(f"skipped {f['image_id']}: {f['error']}", markup=False, soft_wrap=True)
                err_console.print(f"{summary['n_failed']} of {summary['n_failed'] + summary['n_images']} images could not be "
                                  "read (listed above); the summary leaves them out", soft_wrap=True)
                raise typer.Exit(1)

    finally:
        discard_early()  # when the run ended before its outputs took it

def _sanity_check(ds, model, method: str, layers, smooth: str | None, summary: dict, out: Path, n_images: int, seed: int, progress: bool):
    """The cascading model-randomization test of ``method`` on the first ``n_images`` images the run read,
    their ground-truth classes as targets; writes sanity.json/.csv/.png into ``out``; returns the SanityResult."""
    from camkit.sanity import model_randomization_test

    from .sanity_cmd import write_sanity_outputs

    failed = {f["image_id"] for f in summary.get("failed", [])}
    samples = [s for s in ds.samples if s.image_id not in failed][:n_images]
    with _progress_bar(progress, "sanity check") as report:
        result = model_randomization_test(model, [str(s.image_path) for s in samples], [method],
                                          classes=[s.class_index for s in samples], layer=layers, smooth=smooth, seed=seed,
                                          progress=report)
    write_sanity_outputs(result, out)
    for name, reason in result.skipped.items():
        err_console.print(f"[yellow]sanity check skipped[/] {name}: {reason}", soft_wrap=True)
    return result


def _progress_bar(enabled: bool, label: str = "evaluating"):
    """A Rich progress bar on stderr (images/s, ETA) as a ``progress(done, total)`` callback."""
    from contextlib import contextmanager, nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed and task.elapsed:  # too few updates for Rich's windowed speed
                speed = (task.completed - task.fields.get("first", 0)) / task.elapsed
            return Text(f"{speed:.1f} img/s" if speed else "- img/s")

    @contextmanager
    def bar():
        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), ImagesPerSecond(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                      transient=False) as p:
            task = None

            def report(done: int, total: int) -> None:
                nonlocal task
                if task is None:
                    task = p.add_task("eval", total=total, completed=done, first=done)
                else:
                    p.update(task, completed=done)

            yield report

    return bar()


def _print_summary(s: dict, out: Path) -> None:
    from rich.table import Table

    from camkit.evaluate.protocol import Protocol

    def f(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    out_console.print(f"[bold]{s['model']['name']}[/] on {s['dataset']['name']}: {s['n_images']} images")
    t = Table()
    t.add_column("metric")
    t.add_column("%", justify="right")
    rows = [("top-1 cls", "top1_cls"), ("top-5 cls", "top5_cls")]
    if s["n_box_images"]:
        rows += [("top-1 loc", "top1_loc"), ("top-5 loc", "top5_loc"), ("GT-known loc", "gt_known_loc"),
                 ("MaxBoxAcc (V1)", "maxboxacc"), ("MaxBoxAccV2", "maxboxacc_v2")]
    for label, key in rows:
        t.add_row(label, f(s[key]))
    if s["n_box_images"]:
        for k, v in s["maxboxacc_v2_per_iou"].items():
            t.add_row(f"  V2 @ IoU {int(k) / 100:.1f} (tau {s['best_tau']['v2'][k]})", f(v))
    if s["pxap"] is not None:
        t.add_row("PxAP", f(s["pxap"]))
    out_console.print(t)
    p = s["protocol"]
    layer = p.get("layer")
    proto = Protocol(input_size=p["input_size"], tau_step=p["tau_step"], method=p["method"],
                     layer=tuple(layer) if isinstance(layer, list) else layer, smooth=p.get("smooth"))
    if s["n_box_images"]:
        out_console.print(proto.describe(), soft_wrap=True)
    else:
        out_console.print("box metrics skipped: the dataset has masks, no boxes", soft_wrap=True)
    if s["pxap"] is not None:
        out_console.print(proto.describe_pxap(), soft_wrap=True)
    if s.get("faithfulness"):
        fa = s["faithfulness"]
        out_console.print(
            f"faithfulness ({fa['n']} images): deletion AUC {fa['deletion_auc']:.4f} (lower is better), insertion AUC "
            f"{fa['insertion_auc']:.4f} (higher), average drop {fa['average_drop']:.2f}% (lower), increase in "
            f"confidence {fa['increase_in_confidence']:.2f}% (higher)", soft_wrap=True)
    out_console.print(f"results in {out}/ (summary.json, per_image.csv, report.md, plots)")
