"""A short Markdown report: our numbers, the protocol, and the published CAM numbers of the same
benchmark beside them (ImageNet rows for an ILSVRC run, CUB rows for a CUB run, none for other data)."""

from __future__ import annotations

# Published CAM results. CAM paper (Zhou et al., CVPR 2016, Table 2): GoogLeNet-GAP
# top-1 / top-5 localization *error* on ILSVRC val; accuracy = 100 - error.
CAM_PAPER_GOOGLENET_GAP_ERROR = {"top1": 56.40, "top5": 43.00}
# wsolevaluation (Choe et al., CVPR 2020), CAM, MaxBoxAccV2 on the test splits.
WSOLEVAL_CAM_MAXBOXACC_V2 = {
    "ImageNet": {"VGG16": 60.0, "InceptionV3": 63.4, "ResNet50": 63.7},
    "CUB": {"VGG16": 63.7, "InceptionV3": 56.7, "ResNet50": 63.0},
}
# wsolevaluation's CAM PxAP on OpenImages30k test: the numbers are in the paper's results table
# (reproduced as main_table.png in the repository's README), which we could not read as text, so
# the report points to it instead of quoting numbers we have not verified.
WSOLEVAL_CAM_PXAP_SOURCE = "see Choe et al. 2020, results table (README main_table.png)"
WSOLEVAL_PXAP_ARCHS = ("VGG16", "InceptionV3", "ResNet50")
# Below this many images a benchmark number says little (one image moves it by > 1 point).
COMPARABLE_MIN_IMAGES = 1000


def benchmark_of(dataset_name: str) -> str | None:
    """``"ImageNet"``, ``"CUB"`` or ``"OpenImages"`` for the names camkit's readers give those datasets
    (``ILSVRC-2012 val``, ``ILSVRC/test``, ``CUB-200-2011 test``, ``CUB/test``, ``OpenImages/test``); else None."""
    head = dataset_name.strip().upper()
    for prefix, bench in (("ILSVRC", "ImageNet"), ("IMAGENET", "ImageNet"), ("CUB", "CUB"), ("OPENIMAGES", "OpenImages")):
        if head.startswith(prefix):
            return bench
    return None


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown_report(summary: dict, files: dict | None = None) -> str:
    """The report text for ``summary`` (see :func:`camkit.evaluate.summary.summarize`)."""
    n = summary["n_images"]
    p = summary["protocol"]
    model = summary.get("model", {})
    ds = summary.get("dataset", {})
    v2 = summary["maxboxacc_v2_per_iou"]
    has_boxes = summary.get("n_box_images", n) > 0
    pxap = summary.get("pxap")
    lines = [
        f"# Localization benchmark: {model.get('name', '?')} on {ds.get('name', '?')}",
        "",
        f"{n} images evaluated, {summary['n_failed']} unreadable (image or mask; listed in summary.json). "
        f"Maps: `{p['method']}`; weights: `{model.get('weights')}`.",
        "",
        "## Our numbers (%)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| top-1 classification | {_fmt(summary['top1_cls'])} |",
        f"| top-5 classification | {_fmt(summary['top5_cls'])} |",
    ]
    if has_boxes:
        lines += [
            f"| top-1 localization (CVPR16 box) | {_fmt(summary['top1_loc'])} |",
            f"| top-5 localization (CVPR16 box) | {_fmt(summary['top5_loc'])} |",
            f"| GT-known localization (CVPR16 box) | {_fmt(summary['gt_known_loc'])} |",
            f"| MaxBoxAcc (V1, IoU 0.5) | {_fmt(summary['maxboxacc'])} (tau {summary['best_tau']['v1'].get('50')}) |",
            f"| MaxBoxAccV2 (mean of IoU 0.3/0.5/0.7) | {_fmt(summary['maxboxacc_v2'])} |",
        ]
        for key in sorted(v2, key=int):
            lines.append(f"| MaxBoxAccV2 @ IoU {int(key) / 100:.1f} | {_fmt(v2[key])} (tau {summary['best_tau']['v2'][key]}) |")
    if pxap is not None:
        lines.append(f"| PxAP (pixel average precision, {summary.get('n_pxap_images', n)} images) | {_fmt(pxap)} |")
    if not has_boxes:
        lines += ["", "Box metrics (top-k localization, MaxBoxAcc, MaxBoxAccV2) skipped: this dataset has masks, "
                      "no boxes; they are null in summary.json."]
    lines += [""] + _published_rows(summary, benchmark_of(ds.get("name", "")), has_boxes) + [""]
    if n < COMPARABLE_MIN_IMAGES:
        lines.append(
            f"**Not comparable:** {n} images is a sample, not the benchmark split (ILSVRC val: 50,000; CUB test: 5,794; "
            "OpenImages30k test: 5,000); "
            f"one image moves every number by {100 / max(n, 1):.1f} points. Published numbers are for other models "
            "trained for WSOL; they are context, not a target."
        )
    else:
        lines.append(
            "Published numbers are for other architectures and training recipes; compare like with like "
            f"(this run: {model.get('name')}, input {p['input_size']}, {p['n_taus']} thresholds)."
        )
    lines += ["", "## Protocol", ""]
    if has_boxes:
        lines += [_protocol_text(p), ""]
    if pxap is not None:
        lines += [_protocol(p).describe_pxap(), ""]
    if files:
        lines += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()] + [""]
        if "curves" in files:
            lines += [f"![BoxAcc vs tau]({files['curves']})", ""]
        if "pxap_curve" in files:
            lines += [f"![PxAP precision-recall curve]({files['pxap_curve']})", ""]
        for k in ("gallery_best", "gallery_worst"):
            if k in files:
                lines += [f"![{k.replace('_', ' ')}]({files[k]})", ""]
    return "\n".join(lines)


def _published_rows(summary: dict, bench: str | None, has_boxes: bool) -> list[str]:
    """The published CAM numbers of ``bench`` only (another benchmark's numbers say nothing here)."""
    rows = []
    if has_boxes and bench == "ImageNet":
        for k in ("top1", "top5"):
            ours = None if summary[f"{k}_loc"] is None else 100 - summary[f"{k}_loc"]
            rows.append(f"| CAM paper (Zhou et al. 2016), ILSVRC val | GoogLeNet-GAP | top-{k[-1]} loc error | "
                        f"{CAM_PAPER_GOOGLENET_GAP_ERROR[k]:.2f} | {_fmt(ours)} |")
    if has_boxes and bench in WSOLEVAL_CAM_MAXBOXACC_V2:
        for arch, value in WSOLEVAL_CAM_MAXBOXACC_V2[bench].items():
            rows.append(f"| wsolevaluation (Choe et al. 2020), {bench} test | {arch} | MaxBoxAccV2 | {value:.1f} | "
                        f"{_fmt(summary['maxboxacc_v2'])} |")
    if summary.get("pxap") is not None and bench == "OpenImages":
        archs = ", ".join(WSOLEVAL_PXAP_ARCHS)
        rows.append(f"| wsolevaluation (Choe et al. 2020), OpenImages30k test | CAM {archs} | PxAP | "
                    f"{WSOLEVAL_CAM_PXAP_SOURCE} | {_fmt(summary['pxap'])} |")
    if not rows:
        return ["## Published CAM numbers", "", "No published CAM numbers for this dataset (camkit quotes ILSVRC, CUB "
                "and OpenImages30k results only on those benchmarks)."]
    return ["## Published CAM numbers beside ours", "", "| source | model | metric | published | ours |",
            "|---|---|---|---|---|"] + rows


def _protocol(p: dict):
    from camkit.evaluate.protocol import Protocol

    return Protocol(input_size=p["input_size"], tau_step=p["tau_step"], iou_thresholds=tuple(p["iou_thresholds"]),
                    cvpr16_tau=p["cvpr16_tau"], topk=p["topk"], method=p["method"])


def _protocol_text(p: dict) -> str:
    return _protocol(p).describe()
