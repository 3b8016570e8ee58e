"""Benchmark: Pillow's ``Image.resize`` vs camkit.pil_resize.resize_rgb (same pixels) on photos of common sizes.

Run: python bench/bench_pil_resize.py [--rounds 15] [--calls 20]

The photo is scikit-image's astronaut scaled (Pillow, LANCZOS) to 303x227, 500x375 and 1024x768, then
resized to 224x224 with BICUBIC and BILINEAR as ``camkit evaluate`` squashes photos. Timed per call:

- ``pillow``: ``np.asarray(image.resize((224, 224), filter))`` (the reference; PIL image in, array out);
- ``camkit``: ``resize_rgb(image, (224, 224), filter)`` on the same PIL image (its pixels read in place);
- ``camkit array``: ``resize_rgb`` on the photo as a uint8 array;
- ``camkit scalar``: the kernel's portable path (no AVX2) on the array.

Each round times ``--calls`` back-to-back calls of every variant in turn; the table gives the median
over rounds, in ms per call, and the ratio pillow / camkit. Every variant's output is checked equal to
Pillow's first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, markdown_table  # noqa: E402

from camkit import pil_resize  # noqa: E402
from camkit.pil_resize import _FILTER_CODES, _kernel_resize, _pass_order, fast_path_available, kernel_simd, resize_rgb  # noqa: E402

SIZES = [(303, 227), (500, 375), (1024, 768)]
OUT = (224, 224)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    if not fast_path_available():
        sys.exit("the compiled kernel camkit._pilresample is not built or disagrees with this Pillow: run python setup.py build_ext --inplace")
    print(f"kernel path: {kernel_simd()}; Pillow {Image.__version__}", file=sys.stderr)
    order = _pass_order()
    assert order is not None
    photo = Image.fromarray(skimage.data.astronaut())
    rows = []
    for w, h in SIZES:
        image = photo.resize((w, h), Image.Resampling.LANCZOS)
        array = np.array(image)
        for name in ("bicubic", "bilinear"):
            resample = Image.Resampling[name.upper()]
            code = _FILTER_CODES[resample]
            fns: dict[str, Callable[[], np.ndarray]] = {
                "pillow": lambda image=image, resample=resample: np.asarray(image.resize(OUT, resample)),
                "camkit": lambda image=image, name=name: resize_rgb(image, OUT, name),
                "camkit array": lambda array=array, name=name: resize_rgb(array, OUT, name),
                "camkit scalar": lambda array=array, code=code: _kernel_resize(array, OUT, code, order, scalar=True),
            }
            expected = fns["pillow"]()
            for variant, fn in fns.items():
                assert np.array_equal(fn(), expected), f"{variant} differs from Pillow at {w}x{h} {name}"
            ms = {k: 1e3 * v for k, v in interleaved(fns, args.rounds, calls=args.calls).items()}
            rows.append(
                [f"{w}x{h} -> 224x224", name]
                + [f"{ms[k]:.3f}" for k in fns]
                + [f"{ms['pillow'] / ms['camkit']:.1f}x", f"{ms['pillow'] / ms['camkit array']:.1f}x"]
            )
    header = ["resize", "filter", "pillow ms", "camkit ms", "camkit array ms", "camkit scalar ms", "pillow / camkit", "pillow / camkit array"]
    print(markdown_table(header, rows))
    assert pil_resize._kernel is not None


if __name__ == "__main__":
    main()
