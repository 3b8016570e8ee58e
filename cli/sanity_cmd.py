"""``camkit sanity``: model- and data-randomization sanity checks of CAM methods (Adebayo et al., NeurIPS 2018)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import err_console, fail, one_line_errors, out_console


def _images_and_labels(photos: list[Path], dataset: str | None, root: Path | None, annotations: Path | None,
                       split: str | None, limit: int):
    """(images, labels or None) from photo paths or a localization dataset (its GT classes are the targets)."""
    if photos and dataset:
        raise fail("give photos or --dataset, not both")
    if photos:
        return [str(p) for p in photos][:limit], None
    if dataset is None or root is None:
        raise fail("give photos, or --dataset KIND --root DIR (e.g. --dataset ilsvrc --root ILSVRC2012_val)")
    from camkit.datasets import read_layout

    ds = read_layout(dataset, root, annotations, split)
    samples = list(ds.samples)[:limit]
    return [str(s.image_path) for s in samples], [s.class_index for s in samples]


def _imagefolder(root: Path, split: str) -> tuple[list[str], list[int]]:
    folder = root / split if (root / split).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    from camkit.io import find_images

    for i, c in enumerate(classes):
        for p in find_images([folder / c]):
            paths.append(str(p))
            labels.append(i)
    return paths, labels


@one_line_errors
def sanity_command(
    photos: list[Path] = typer.Argument(None, help="Photos to explain (or use --dataset)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Localization dataset layout (ilsvrc, cub, wsol, csv): its GT classes are explained."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder."),
    annotations: Path | None = typer.Option(None, "--annotations", help="Boxes file/folder, as for camkit evaluate."),
    split: str | None = typer.Option(None, "--split", help="Dataset split, as for camkit evaluate."),
    limit: int = typer.Option(12, "--limit", min=1, max=1000, help="At most this many images."),
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name; default: the embedded efficientnet_lite0."),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Checkpoint file or a weights name."),
    methods: list[str] = typer.Option(["cam", "gradcam"], "--method", help="Method to check (repeat the flag for several)."),
    layer: list[str] | None = typer.Option(None, "--layer", help="Target layer of the non-CAM methods (module name); repeat to fuse several; default: automatic."),
    smooth: str | None = typer.Option(None, "--smooth", help="aug or eigen smoothing of every map (as camkit explain)."),
    mode: str = typer.Option("cascading", "--mode", help="cascading (logits down to input, cumulative) or independent (one block at a time)."),
    data_randomization: Path | None = typer.Option(None, "--data-randomization", help="ImageFolder root (train/ and val/ class folders) for the data randomization test."),
    seed: int = typer.Option(0, "--seed", help="Seeds the re-initialisation and the label permutation."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=1024, help="Masked inputs per forward (perturbation methods)."),
    out: Path = typer.Option(Path("camkit-sanity"), "--out", "-o", help="Output folder: sanity.json, sanity.csv, sanity.png."),
    as_json: bool = typer.Option(False, "--json", help="Print the result JSON on stdout instead of the table."),
) -> None:
    """Sanity checks (Adebayo et al. 2018): do a method's maps change when the model's weights or labels are randomized?"""
    from camkit.cam.methods import check_smooth, layer_spec, method_info
    from camkit.io.run_lock import RunLock
    from camkit.models import load_model
    from camkit.sanity import data_randomization_test, model_randomization_test

    if mode not in ("cascading", "independent"):
        raise fail(f"--mode {mode!r}: use cascading or independent")
    layers, smooth = layer_spec(layer), check_smooth(smooth)
    names = [method_info(x).name for m in methods for x in m.split(",") if x.strip()]
    if data_randomization is None:
        images, labels = _images_and_labels(list(photos or []), dataset, root, annotations, split, limit)
        if not images:
            raise fail("no images to check")
    elif not data_randomization.is_dir():
        raise fail(f"--data-randomization {data_randomization} is not a folder; pass an ImageFolder root with train/ and val/")
    m = load_model(model, weights)
    with RunLock(out, "camkit sanity"):
        if data_randomization is not None:
            tr, ytr = _imagefolder(data_randomization, "train")
            ev, yev = _imagefolder(data_randomization, "val")
            if not ev:
                ev, yev = tr, ytr
            result = data_randomization_test(m, tr, ytr, ev[:limit], yev[:limit], names, seed=seed, batch_size=batch_size)
        else:
            from rich.progress import Progress

            with Progress(console=err_console, transient=True) as bar:
                task = bar.add_task(f"randomizing {m.name}", total=None)
                result = model_randomization_test(
                    m, images, names, classes=labels, mode=mode, seed=seed, batch_size=batch_size, layer=layers, smooth=smooth,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        write_sanity_outputs(result, out)
    for name, reason in result.skipped.items():
        err_console.print(f"[yellow]skipped[/] {name}: {reason}", soft_wrap=True)
    if as_json:
        out_console.print_json(json.dumps(result.to_dict()))
    else:
        print_sanity_table(result, out)
    if result.skipped:
        raise typer.Exit(1)


def write_sanity_outputs(result, out: Path) -> None:
    """sanity.json, sanity.csv and the plot sanity.png of a :class:`camkit.sanity.SanityResult` in ``out``."""
    from camkit.sanity import plot_sanity

    (out / "sanity.json").write_text(json.dumps(result.to_dict(), indent=1))
    result.write_csv(out / "sanity.csv")
    plot_sanity(result, out / "sanity.png")


def print_sanity_table(result, out: Path) -> None:
    """The similarity table on stdout (second step and last step of the randomization, per method)."""
    from rich.table import Table

    t = Table(title=f"{result.test} sanity check, {result.model}: similarity to the trained model's maps (1 = unchanged)")
    t.add_column("method")
    for measure in ("spearman_abs", "spearman", "ssim"):
        t.add_column(f"{measure} @ {result.steps[1] if len(result.steps) > 1 else ''}", justify="right")
        t.add_column(f"{measure} @ {result.steps[-1]}", justify="right")
    for method, per in result.scores.items():
        row = [method]
        for measure in ("spearman_abs", "spearman", "ssim"):
            row += [f"{per[measure][1]:.3f}", f"{per[measure][-1]:.3f}"]
        t.add_row(*row)
    out_console.print(t)
    err_console.print(f"wrote {out}/sanity.json, sanity.csv, sanity.png")
