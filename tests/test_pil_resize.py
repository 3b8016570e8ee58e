"""camkit.pil_resize.resize_rgb equals Pillow's ``Image.resize`` bit for bit.

The compiled kernel (AVX2 and portable paths, RGB arrays and Pillow's in-place RGBX memory) against
``np.asarray(Image.fromarray(a).resize(size, filter))`` on thousands of random size pairs (down and up,
1-pixel sides, extreme ratios, one side unchanged, both pass orders of Pillow 13), random and saturated
0/255 content whose bicubic overshoot clips, and the scikit-image photos; the Pillow fallback for
everything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import numpy as np
import PIL
import pytest
import skimage.data
from PIL import Image

from camkit import pil_resize
from camkit.errors import ParameterError
from camkit.pil_resize import (
    _FILTER_CODES,
    _kernel_resize,
    _pass_order,
    fast_path_available,
    kernel_simd,
    resize_rgb,
    resize_rgb_planar,
)

needs_kernel = pytest.mark.skipif(
    pil_resize._kernel is None, reason="the compiled kernel camkit._pilresample is not built (python setup.py build_ext --inplace)"
)

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# the kernel's portable path always; the AVX2 path too where the CPU has it
PATHS = [True, False] if kernel_simd() == "avx2" else [True]


def pillow(a: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize(size, FILTERS[interpolation]))


def kernel(image: np.ndarray | Image.Image, size: tuple[int, int], interpolation: str, scalar: bool) -> np.ndarray:
    order = _pass_order()
    assert order is not None
    return _kernel_resize(image, size, _FILTER_CODES[FILTERS[interpolation]], order, scalar)


def content(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    if kind == 0:  # noise
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == 1:  # 0/255 checkerboard: the bicubic lobes overshoot both ends and clip
        board = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 * 255).astype(np.uint8)
        return np.repeat(board[:, :, None], 3, axis=2)
    if kind == 2:  # random 0/255 per channel
        return (rng.random((h, w, 3)) < 0.5).astype(np.uint8) * 255
    # a smooth ramp with a hard edge
    ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    ramp[: h // 2, :, 1] = 255 - ramp[: h // 2, :, 1]
    return ramp.astype(np.uint8)


def assert_all_paths_equal(a: np.ndarray, size: tuple[int, int], interpolation: str) -> None:
    expected = pillow(a, size, interpolation)
    for scalar in PATHS:
        for image in (a, Image.fromarray(a)):
            got = kernel(image, size, interpolation, scalar)
            if not np.array_equal(got, expected):
                bad = np.argwhere(got != expected)
                raise AssertionError(
                    f"{a.shape[1]}x{a.shape[0]} -> {size} {interpolation} scalar={scalar} {type(image).__name__}: "
                    f"{len(bad)} values differ, first at {bad[0].tolist()}: {got[tuple(bad[0])]} != {expected[tuple(bad[0])]}"
                )


@needs_kernel
def test_the_kernel_follows_the_installed_pillow():
    # Pillow 13 chooses the first pass by size; Pillow up to 12 always filters horizontally first
    assert fast_path_available()
    expected = pil_resize._ORDER_PILLOW13 if int(PIL.__version__.split(".")[0]) >= 13 else pil_resize._ORDER_HORIZONTAL_FIRST
    assert _pass_order() == expected


@needs_kernel
def test_the_calibration_sizes_tell_the_pass_orders_apart():
    rng = np.random.default_rng(0)
    for (w, h), size in pil_resize._CALIBRATION[:3]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for code in (0, 1):
            horizontal_first = _kernel_resize(a, size, code, pil_resize._ORDER_HORIZONTAL_FIRST, scalar=True)
            pillow13 = _kernel_resize(a, size, code, pil_resize._ORDER_PILLOW13, scalar=True)
            assert not np.array_equal(horizontal_first, pillow13)


@needs_kernel
def test_random_sizes_and_contents_equal_pillow():
    rng = np.random.default_rng(1)
    for trial in range(2500):
        w, h = (int(v) for v in rng.integers(1, 48, 2))
        ow, oh = (int(v) for v in rng.integers(1, 64, 2))
        if trial % 6 == 0:
            ow = w  # one pass only
        elif trial % 6 == 1:
            oh = h
        elif trial % 6 == 2:  # around Pillow 13's switch: h - oh near 2 * (w - ow)
            w, h = int(rng.integers(4, 40)), int(rng.integers(20, 90))
            ow = int(rng.integers(1, w))
            oh = min(max(h - 2 * (w - ow) + int(rng.integers(-1, 2)), 1), h - 1)
        a = content(rng, h, w, trial % 4)
        for interpolation in FILTERS:
            assert_all_paths_equal(a, (ow, oh), interpolation)


@needs_kernel
@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [
        ((4000, 3), (5, 700)),  # extreme ratios both ways
        ((3, 4000), (700, 5)),
        ((1, 1), (57, 3)),
        ((1, 1), (1, 2)),
        ((57, 1), (1, 1)),
        ((1, 57), (9, 1)),
        ((2, 2), (1000, 1)),
        ((999, 2), (1, 1)),
        ((640, 480), (640, 17)),  # one side unchanged
        ((640, 480), (3, 480)),
        ((37, 23), (37, 23)),  # no pass: a copy
        ((300, 200), (301, 199)),  # nearly the same size
        ((97, 300), (96, 100)),  # Pillow 13: vertically first
    ],
)
def test_edge_sizes_equal_pillow(in_size, out_size):
    rng = np.random.default_rng(2)
    w, h = in_size
    for kind in range(3):
        a = content(rng, h, w, kind)
        for interpolation in FILTERS:
            assert_all_paths_equal(a, out_size, interpolation)


@needs_kernel
@pytest.mark.parametrize("photo", ["chelsea", "coffee", "astronaut", "rocket"])
def test_photos_equal_pillow(photo):
    a = np.ascontiguousarray(getattr(skimage.data, photo)()[:, :, :3])
    h, w = a.shape[:2]
    for size in [(224, 224), (w // 3, h // 2), (w + 37, h * 2), (w, 224), (100, h), (31, 400)]:
        for interpolation in FILTERS:
            assert_all_paths_equal(a, size, interpolation)


@needs_kernel
def test_resize_rgb_takes_the_kernel_on_rgb_input():
    a = np.ascontiguousarray(skimage.data.astronaut()[::2, ::3])
    assert fast_path_available()  # the one-off calibration runs before the spy
    calls = []
    real = pil_resize._kernel_resize

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pil_resize, "_kernel_resize", spy)
        for interpolation in ("bilinear", "BICUBIC"):
            for image in (a, Image.fromarray(a)):
                got = resize_rgb(image, (224, 224), interpolation)
                assert np.array_equal(got, np.asarray(Image.fromarray(a).resize((224, 224), Image.Resampling[interpolation.upper()])))
                assert got.dtype == np.uint8 and got.shape == (224, 224, 3) and got.flags.writeable
        resize_rgb(a, (224, 224), "nearest")
    assert calls == [0, 0, 1, 1]


@needs_kernel
def test_a_non_contiguous_array_and_an_image_in_several_blocks_equal_pillow():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    view = a[::2, ::-1]  # strided view
    assert np.array_equal(resize_rgb(view, (17, 45), "bicubic"), pillow(np.ascontiguousarray(view), (17, 45), "bicubic"))
    # above Pillow's 16 MiB block (RGBX: 4 bytes a pixel) the Arrow export fails: read through tobytes
    big = Image.fromarray(np.repeat(np.repeat(rng.integers(0, 256, (75, 70, 3), dtype=np.uint8), 30, 0), 30, 1))
    with pytest.raises(ValueError):
        big.__arrow_c_array__()
    assert np.array_equal(resize_rgb(big, (224, 224), "bicubic"), np.asarray(big.resize((224, 224), Image.Resampling.BICUBIC)))


@needs_kernel
@pytest.mark.skipif(sys.platform != "linux", reason="guard pages through libc mprotect (Linux)")
def test_the_kernel_reads_nothing_past_the_source():
    # the source ends right before a page that may not be read: a read past its end would crash
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    page = mmap.PAGESIZE
    rng = np.random.default_rng(5)
    for (w, h), size in [((5, 3), (1, 2)), ((1, 1), (3, 3)), ((7, 2), (40, 1)), ((31, 17), (3, 5)), ((200, 9), (61, 4)), ((2, 50), (9, 8))]:
        nbytes = w * h * 3
        total = -(-nbytes // page) * page + page
        memory = mmap.mmap(-1, total)
        buffer = np.frombuffer(memory, dtype=np.uint8)
        assert libc.mprotect(ctypes.c_void_p(buffer.ctypes.data + total - page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
        a = buffer[total - page - nbytes : total - page].reshape(h, w, 3)
        a[...] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for interpolation in FILTERS:
            expected = pillow(np.array(a), size, interpolation)
            for scalar in PATHS:
                assert np.array_equal(kernel(a, size, interpolation, scalar), expected)
        del a, buffer
        memory.close()


def test_the_fallback_equals_pillow(monkeypatch):
    # no kernel: everything goes to Pillow
    monkeypatch.setattr(pil_resize, "_pass_order", lambda: None)
    assert not fast_path_available()
    a = np.ascontiguousarray(skimage.data.chelsea()[::3, ::2])
    for interpolation in ("bilinear", "bicubic", "nearest"):
        got = resize_rgb(Image.fromarray(a), (224, 224), interpolation)
        assert np.array_equal(got, np.asarray(Image.fromarray(a).resize((224, 224), Image.Resampling[interpolation.upper()])))


def test_other_filters_and_modes_go_to_pillow():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    cases = [
        (Image.fromarray(rgb), "lanczos"),
        (Image.fromarray(rgb), "nearest"),
        (Image.fromarray(rgb), "box"),
        (Image.fromarray(gray), "bicubic"),
        (gray, "bilinear"),
        (Image.fromarray(rgba), "bicubic"),
        (rgba, "bicubic"),
        (Image.fromarray(rgb).convert("P"), "bicubic"),
        (Image.fromarray(rgb).convert("I"), "bilinear"),
    ]
    for image, interpolation in cases:
        pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
        expected = np.asarray(pil.resize((23, 61), Image.Resampling[interpolation.upper()]))
        assert np.array_equal(resize_rgb(image, (23, 61), interpolation), expected), (pil.mode, interpolation)


def test_bad_arguments_raise_parameter_errors():
    im = Image.new("RGB", (8, 8))
    for size in [(0, 5), (5,), (2.5, 3), "ab", None]:
        with pytest.raises(ParameterError, match="^size="):
            resize_rgb(im, size, "bicubic")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^interpolation='cubic' is not a Pillow resampling filter"):
        resize_rgb(im, (4, 4), "cubic")
    with pytest.raises(ParameterError, match="^image="):
        resize_rgb([[1, 2, 3]], (4, 4), "bicubic")  # type: ignore[arg-type]


@needs_kernel
def test_the_kernel_checks_its_buffers():
    k = pil_resize._kernel
    out = np.empty((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="src does not hold"):
        k.resize(np.zeros((5, 5, 3), np.uint8), 6, 5, out, 4, 4, 1, 1)
    with pytest.raises(ValueError, match="dst does not hold"):
        k.resize(np.zeros((5, 5, 3), np.uint8), 5, 5, out, 4, 5, 1, 1)
    with pytest.raises(ValueError, match="filter must be"):
        k.resize(np.zeros((5, 5, 3), np.uint8), 5, 5, out, 4, 4, 2, 1)
    with pytest.raises(ValueError, match="Arrow export"):  # an L image's export is not 4 bytes a pixel
        k.resize(Image.new("L", (5, 5)).__arrow_c_array__(), 5, 5, out, 4, 4, 1, 1)


def _planes_by_lookup(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The independent answer: numpy's own indexing of each channel's table."""
    return np.stack([table[c][pixels[..., c]] for c in range(3)])


@needs_kernel
def test_planar_lookup_equals_resize_then_table():
    rng = np.random.default_rng(6)
    table = rng.standard_normal((3, 256)).astype(np.float32)  # every entry distinct: a swapped channel shows
    photo = np.ascontiguousarray(skimage.data.coffee())
    big = Image.fromarray(np.repeat(np.repeat(rng.integers(0, 256, (75, 70, 3), dtype=np.uint8), 30, 0), 30, 1))
    images = [photo, Image.fromarray(photo), photo[::2, ::-3], Image.fromarray(content(rng, 9, 13, 1)), big]
    for image in images:
        for interpolation in FILTERS:
            for size in [(224, 224), (5, 300), (1, 1)]:
                out = np.full((3, size[1], size[0]), np.nan, np.float32)
                assert resize_rgb_planar(image, size, interpolation, table, out)
                want = _planes_by_lookup(resize_rgb(image, size, interpolation), table)
                assert np.array_equal(out, want), (type(image).__name__, interpolation, size)
                # a channels-last row ([3, h, w] over interleaved pixels): the same values, interleaved
                pixels = np.full((size[1], size[0], 3), np.nan, np.float32)
                assert resize_rgb_planar(image, size, interpolation, table, pixels.transpose(2, 0, 1))
                assert np.array_equal(pixels.transpose(2, 0, 1), want), (type(image).__name__, interpolation, size)


def test_planar_lookup_declines_what_the_kernel_does_not_take(monkeypatch):
    table = np.zeros((3, 256), np.float32)
    rgb = Image.new("RGB", (20, 10))
    out = np.zeros((3, 8, 8), np.float32)
    declined = [
        (rgb, "nearest", table, out),  # Pillow's filter, not the kernel's
        (Image.new("L", (20, 10)), "bicubic", table, out),
        (rgb, "bicubic", table.astype(np.float64), out),
        (rgb, "bicubic", table[:, :128], out),
        (rgb, "bicubic", table, out.astype(np.float64)),
        (rgb, "bicubic", table, np.zeros((3, 8, 9), np.float32)),  # not the size asked for
        (rgb, "bicubic", table, np.zeros((3, 8, 16), np.float32)[:, :, ::2]),  # not contiguous
        (rgb, "bicubic", table, np.zeros((8, 16, 3), np.float32)[:, ::2].transpose(2, 0, 1)),  # nor interleaved
    ]
    for image, interpolation, t, o in declined:
        before = o.copy()
        assert resize_rgb_planar(image, (8, 8), interpolation, t, o) is False
        assert np.array_equal(o, before)
    monkeypatch.setattr(pil_resize, "_pass_order", lambda: None)  # no kernel
    assert resize_rgb_planar(rgb, (8, 8), "bicubic", table, out) is False


@needs_kernel
def test_the_planar_kernel_checks_its_buffers():
    k = pil_resize._kernel
    src, table, out = np.zeros((5, 5, 3), np.uint8), np.zeros((3, 256), np.float32), np.empty((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="table must hold"):
        k.resize_planar(src, 5, 5, table[:2], out, 4, 4, 1, 1)
    with pytest.raises(ValueError, match="dst does not hold"):
        k.resize_planar(src, 5, 5, table, out, 4, 5, 1, 1)
    with pytest.raises(ValueError, match="src does not hold"):
        k.resize_planar(src, 6, 5, table, out, 4, 4, 1, 1)
    with pytest.raises(ValueError, match="filter must be"):
        k.resize_planar(src, 5, 5, table, out, 4, 4, 2, 1)
    with pytest.raises(TypeError):
        k.resize_planar(src, 5, 5, table, np.empty((3, 4, 4), np.float32)[::-1], 4, 4, 1, 1)  # not writable contiguous
