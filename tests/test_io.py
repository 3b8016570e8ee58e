"""camkit.io: loading every odd-but-valid image to upright 8-bit RGB, refusing bad ones with one-line
errors, the pixel limit checked before decoding, and image discovery over files, folders and globs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures import odd_images as odd
from PIL import Image, ImageFile, ImageOps

from camkit.errors import ImageError
from camkit.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    find_images,
    is_image_path,
    load_image,
    load_image_with_info,
)
from camkit.io import images as images_module

SHARED = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"


def rgb(source, **kw) -> np.ndarray:
    img = load_image(source, **kw)
    assert img.mode == "RGB"
    a = np.asarray(img)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    return a


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    return odd.write_all_valid(tmp_path_factory.mktemp("valid"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return odd.write_all_bad(tmp_path_factory.mktemp("bad"))


# ------------------------------------------------------------------------------------------------
# Valid files


# (width, height) each valid fixture must load at; EXIF 6/8 swap the stored 96x64.
EXPECTED_SIZES = {
    "gray": (451, 300), "rgba": (451, 300), "gray_alpha": (20, 10), "palette_png": (40, 30),
    "animated_gif": (40, 30), "cmyk_jpeg": (80, 16), "png16": (256, 4), "float_tiff": (5, 3),
    "bilevel": (8, 8), "exif6": (64, 96), "exif8": (64, 96), "tiny": (1, 1), "wide": (4000, 10),
    "format_png": (451, 300), "format_bmp": (451, 300), "format_tiff": (451, 300),
    "format_webp": (451, 300), "format_jpeg": (451, 300),
}


def test_every_valid_fixture_is_covered(valid):
    assert set(valid) == set(EXPECTED_SIZES)


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_valid_file_loads_as_rgb_uint8_of_the_right_size(valid, name):
    img = load_image(valid[name])
    assert img.mode == "RGB"
    assert img.size == EXPECTED_SIZES[name]
    w, h = EXPECTED_SIZES[name]
    assert np.asarray(img).shape == (h, w, 3)


@pytest.mark.parametrize("fmt", ["png", "bmp", "tiff", "webp"])
def test_lossless_formats_give_back_the_exact_photo(valid, fmt):
    np.testing.assert_array_equal(rgb(valid[f"format_{fmt}"]), odd.chelsea())


def test_jpeg_is_close_to_the_photo(valid):
    err = np.abs(rgb(valid["format_jpeg"]).astype(int) - odd.chelsea().astype(int))
    assert err.mean() < 2.0  # quality 95; measured about 1.0


def test_path_may_be_str_or_path(valid):
    np.testing.assert_array_equal(rgb(str(valid["format_png"])), rgb(valid["format_png"]))


def test_grayscale_is_replicated_to_three_equal_channels(valid):
    a = rgb(valid["gray"])
    gray = odd.chelsea_gray()
    for c in range(3):
        np.testing.assert_array_equal(a[..., c], gray)


def test_rgba_is_composited_on_white(valid):
    a = rgb(valid["rgba"]).astype(int)
    cat = odd.chelsea().astype(int)
    # alpha 255: the photo unchanged.
    np.testing.assert_array_equal(a[:, :150], cat[:, :150])
    # alpha 0 over black RGB: white (dropping alpha would give black).
    assert (a[:, 300:] == 255).all()
    # alpha 128: c * 128/255 + 255 * 127/255, e.g. c = 0 -> 127.0, c = 255 -> 255; Pillow rounds
    # its integer blend, so allow 1.
    expected = cat[:, 150:300] * 128 / 255 + 255 * 127 / 255
    assert np.abs(a[:, 150:300] - expected).max() <= 1.0


def test_gray_alpha_is_composited_on_white(valid):
    a = rgb(valid["gray_alpha"])
    assert (a[:, :10] == 40).all()
    assert (a[:, 10:] == 255).all()


@pytest.mark.parametrize("name", ["palette_png", "animated_gif"])
def test_palette_colours_survive_and_transparency_is_white(valid, name):
    a = rgb(valid[name])
    idx = odd.palette_indices()
    for index, colour in enumerate(odd.PALETTE):
        mask = idx == index
        want = (255, 255, 255) if index == odd.PALETTE_TRANSPARENT else colour
        assert mask.any()
        assert (a[mask] == want).all(), (index, np.unique(a[mask], axis=0))
    # The GIF's second frame is all blue: the first frame (red/green stripes) must be the one loaded.
    assert (a[:10, :30] == (255, 0, 0)).all()


def test_cmyk_jpeg_pure_inks_convert_to_their_rgb_colours(valid):
    a = rgb(valid["cmyk_jpeg"]).astype(int)
    for i, (ink, want) in enumerate(odd.CMYK_BLOCKS):
        centre = a[4:12, 16 * i + 4 : 16 * i + 12].reshape(-1, 3)
        # JPEG quality 100 on flat 16x16 blocks: within a few levels.
        assert np.abs(centre - np.array(want)).max() <= 4, (ink, centre[0])


def test_16bit_png_is_scaled_by_bit_depth_not_clipped(valid):
    img, info = load_image_with_info(valid["png16"])
    assert info.mode == "I;16" and info.format == "PNG"
    a = np.asarray(img)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all()
    g = a[..., 0].astype(int)
    x = np.arange(256)
    # Row 0 = 257*x: exactly x, so 0 -> 0 and 65535 -> 255 (clipping would make 255 of nearly all).
    np.testing.assert_array_equal(g[0], x)
    assert g[0, 0] == 0 and g[0, 255] == 255
    # Row 1 = 257x + 128 -> x + 0.498 -> x; row 2 = 257x + 129 -> x + 0.502 -> x + 1 (capped at 255).
    np.testing.assert_array_equal(g[1], x)
    np.testing.assert_array_equal(g[2], np.minimum(x + 1, 255))
    # Row 3 = 256x + 7: round(v * 255 / 65535) by float arithmetic, an independent route.
    v = odd.uint16_gradient()[3].astype(np.float64)
    np.testing.assert_array_equal(g[3], np.round(v * 255 / 65535))
    assert (g[3] != (odd.uint16_gradient()[3] >> 8)).sum() == 120  # x = 136..255: shifting is wrong


def test_16bit_big_endian_and_32bit_int_pil_images():
    x = np.arange(256, dtype=np.uint16)
    values = (257 * x).reshape(1, 256)
    big = Image.frombytes("I;16B", (256, 1), values.astype(">u2").tobytes())
    np.testing.assert_array_equal(rgb(big)[0, :, 0], x)
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    np.testing.assert_array_equal(rgb(as_int32)[0, :, 1], x)
    # Out of the 16-bit range: min-max. [-10, 0, 10] -> 0, 255 * 10/20 = 127.5 -> 128, 255.
    wide_range = Image.fromarray(np.array([[-10, 0, 10]], np.int32))
    np.testing.assert_array_equal(rgb(wide_range)[0, :, 2], [0, 128, 255])


def test_float_images(valid):
    # [0, 0.25, 0.5, 0.75, 1] * 255 = 0, 63.75, 127.5, 191.25, 255 -> 0, 64, 128, 191, 255.
    np.testing.assert_array_equal(rgb(valid["float_tiff"])[1, :, 0], [0, 64, 128, 191, 255])
    # Outside [0, 1]: min-max. [-1, 0, 3] -> 0, 255 * 1/4 = 63.75 -> 64, 255; NaN -> 0 (= 0.0 here).
    f = Image.fromarray(np.array([[-1.0, 0.0, 3.0, np.nan]], np.float32))
    np.testing.assert_array_equal(rgb(f)[0, :, 0], [0, 64, 255, 64])


def test_bilevel_is_black_and_white(valid):
    board = ((np.indices((8, 8)) // 2).sum(axis=0) % 2).astype(np.uint8) * 255
    a = rgb(valid["bilevel"])
    assert a[0, 0, 0] == 0 and a[0, 2, 0] == 255
    np.testing.assert_array_equal(a[..., 1], board)


@pytest.mark.parametrize(
    "orientation, k_ccw, corner",
    [(6, -1, "top-right"), (8, 1, "bottom-left"), (3, 2, "bottom-right")],
)
def test_exif_orientation_puts_the_marked_corner_where_it_belongs(tmp_path, orientation, k_ccw, corner):
    path = odd.write_exif_rotated_jpeg(tmp_path, orientation)
    img, info = load_image_with_info(path)
    sw, sh = odd.EXIF_STORED_SIZE
    assert info.original_size == (sw, sh) and info.orientation == orientation
    a = np.asarray(img)
    h, w = a.shape[:2]
    assert (w, h) == ((sh, sw) if orientation in (6, 8) else (sw, sh)) == img.size == info.size
    m = odd.EXIF_MARKER
    centres = {
        "top-left": (m // 2, m // 2),
        "top-right": (m // 2, w - m // 2),
        "bottom-left": (h - m // 2, m // 2),
        "bottom-right": (h - m // 2, w - m // 2),
    }
    for name, (y, x) in centres.items():
        is_red = a[y, x, 0] > 200 and a[y, x, 1] < 60 and a[y, x, 2] < 60
        assert is_red == (name == corner), (name, a[y, x])
    # Independently: the stored pixels rotated with numpy (k quarter turns counter-clockwise).
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("RGB"))
    np.testing.assert_array_equal(a, np.rot90(stored, k=k_ccw))
    # The orientation tag is gone from the result, so nothing downstream rotates twice.
    assert img.getexif().get(0x0112, 1) == 1
    assert ImageOps.exif_transpose(img).size == img.size


def test_tiny_and_wide_images(valid):
    np.testing.assert_array_equal(rgb(valid["tiny"]), [[[12, 34, 56]]])
    np.testing.assert_array_equal(rgb(valid["wide"]), odd.wide_array())


@pytest.mark.parametrize("name", ["format_jpeg", "cmyk_jpeg", "png16", "exif6", "rgba", "animated_gif"])
def test_loading_twice_gives_identical_arrays(valid, name):
    np.testing.assert_array_equal(rgb(valid[name]), rgb(valid[name]))


@pytest.mark.parametrize("name", ["format_jpeg", "cmyk_jpeg", "png16", "exif6", "rgba", "animated_gif"])
def test_streamed_and_whole_file_reads_give_identical_arrays(valid, name, monkeypatch):
    import camkit.io.images as images

    whole = rgb(valid[name])  # small files are read in one piece
    monkeypatch.setattr(images, "_READ_WHOLE_BYTES", 0)  # as a file above the limit: Pillow reads the file itself
    np.testing.assert_array_equal(rgb(valid[name]), whole)


# ------------------------------------------------------------------------------------------------
# PIL and numpy input


def test_pil_input_is_converted_the_same_way_and_not_modified(valid):
    with Image.open(valid["exif6"]) as lazy:  # not yet decoded, EXIF orientation still applies
        out = load_image(lazy)
        assert lazy.mode == "RGB" and lazy.size == odd.EXIF_STORED_SIZE
    np.testing.assert_array_equal(np.asarray(out), rgb(valid["exif6"]))
    pal = Image.open(valid["palette_png"])
    pal.load()
    out = load_image(pal)
    assert pal.mode == "P" and out is not pal
    np.testing.assert_array_equal(np.asarray(out), rgb(valid["palette_png"]))
    already = Image.fromarray(odd.chelsea())
    out = load_image(already)
    assert out is not already
    np.testing.assert_array_equal(np.asarray(out), odd.chelsea())


def test_numpy_input():
    cat = odd.chelsea()
    np.testing.assert_array_equal(rgb(cat), cat)
    np.testing.assert_array_equal(rgb(odd.chelsea_gray())[..., 2], odd.chelsea_gray())
    np.testing.assert_array_equal(rgb(odd.chelsea_gray()[..., None])[..., 0], odd.chelsea_gray())
    # float in [0, 1]: 0.5 * 255 = 127.5 -> 128; 0.2 * 255 = 51.
    np.testing.assert_array_equal(rgb(np.array([[0.0, 0.2, 0.5, 1.0]]))[0, :, 0], [0, 51, 128, 255])
    np.testing.assert_array_equal(rgb(np.array([[True, False]]))[0, :, 0], [255, 0])
    # RGBA arrays are composited on white like RGBA files.
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)
    np.testing.assert_array_equal(rgb(rgba), [[[10, 20, 30], [255, 255, 255]]])
    # Non-contiguous views are fine.
    np.testing.assert_array_equal(rgb(cat[::2, ::-3]), cat[::2, ::-3])
    img, info = load_image_with_info(cat)
    assert info.format is None and info.source == "<array 300x451x3 uint8>"


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full((4, 4, 3), 1.5), "[0, 1]"),
        (np.full((4, 4), np.nan), "[0, 1]"),
        (np.zeros((4, 4), np.int32), "dtype"),
        (np.zeros((3, 20, 30), np.uint8), "transpose(1, 2, 0)"),
        (np.zeros((4, 4, 5), np.uint8), "HxWx3"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ],
)
def test_bad_arrays_raise_image_error(array, fragment):
    with pytest.raises(ImageError) as e:
        load_image(array)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_zero_pixel_pil_image_and_wrong_type():
    with pytest.raises(ImageError, match="no pixels"):
        load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(TypeError, match="int"):
        load_image(42)


# ------------------------------------------------------------------------------------------------
# Bad files

BAD_MESSAGES = {
    "missing": "no such file",
    "directory": "is a directory",
    "empty": "empty file (0 bytes)",
    "truncated_jpeg": "truncated",
    "truncated_png": "truncated",
    "text": "is a text file, not an image",
    "html": "HTML page",
    "junk": "not an image",
    "unsupported": "PCX images are not supported",
    "heic": "HEIC images are not supported",
    "huge_header": "too many pixels",
}


def test_every_bad_fixture_is_covered(bad):
    assert set(bad) == set(BAD_MESSAGES)


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_bad_file_raises_one_line_image_error_naming_the_file(bad, name, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)  # Pillow's default, made explicit
    with pytest.raises(ImageError) as e:
        load_image(bad[name])
    message = str(e.value)
    assert BAD_MESSAGES[name] in message
    assert bad[name].name in message
    assert "\n" not in message
    assert "; " in message  # the "what to do" part


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_bad_files_streamed_get_the_same_one_line_errors(bad, name, monkeypatch):
    import camkit.io.images as images

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    monkeypatch.setattr(images, "_READ_WHOLE_BYTES", 0)
    with pytest.raises(ImageError, match=re.escape(BAD_MESSAGES[name])):
        load_image(bad[name])


def test_permission_denied_is_reported(valid, monkeypatch):
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Module-level name shadows the builtin for the loader only (tests run as root here, so chmod
    # alone would not deny anything).
    monkeypatch.setattr(images_module, "open", deny, raising=False)
    with pytest.raises(ImageError, match=r"gray_L\.png: permission denied"):
        load_image(valid["gray"])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_for_real(tmp_path):
    path = odd.write_tiny(tmp_path)
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------------------------------------
# Pixel limit


class DecodeSpy:
    """Counts ImageFile.load and Image._getdecoder calls: all pixel decoding goes through them."""

    def __init__(self, monkeypatch):
        self.loads = 0
        self.decoders = 0
        real_load, real_getdecoder = ImageFile.ImageFile.load, Image._getdecoder

        def load(im, *a, **k):
            self.loads += 1
            return real_load(im, *a, **k)

        def getdecoder(*a, **k):
            self.decoders += 1
            return real_getdecoder(*a, **k)

        monkeypatch.setattr(ImageFile.ImageFile, "load", load)
        monkeypatch.setattr(Image, "_getdecoder", getdecoder)


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = odd.write_large_png(tmp_path)  # 3000 x 3000 = 9,000,000 pixels
    spy = DecodeSpy(monkeypatch)
    with pytest.raises(ImageError) as e:
        load_image(path, max_pixels=1_000_000)
    expected = "large_3000x3000.png: too many pixels (3000x3000 = 9,000,000 > max_pixels = 1,000,000)"
    assert expected in str(e.value)
    assert spy.loads == 0 and spy.decoders == 0
    # The spy does see decoding when the limit allows it.
    assert load_image(path, max_pixels=9_000_000).size == (3000, 3000)
    assert spy.loads >= 1 and spy.decoders >= 1


def test_default_limit_refuses_a_header_only_bomb_without_warnings(bad, monkeypatch):
    assert DEFAULT_MAX_PIXELS == 89_478_485 == 1024**3 // 4 // 3
    spy = DecodeSpy(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks out either
        with pytest.raises(ImageError, match=r"too many pixels \(10,000,000,000 > max_pixels = 89,478,485\)"):
            load_image(bad["huge_header"])
    assert spy.loads == 0 and spy.decoders == 0


def test_between_pillow_limit_and_twice_it_gets_camkit_message(tmp_path):
    # 10000 x 10000 = 1e8: above Pillow's warning limit (89,478,485), below its hard limit (2x);
    # Pillow only warns there, so camkit's own check must give the exact size.
    path = odd.write_huge_header_png(tmp_path, 10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=r"10000x10000 = 100,000,000 > max_pixels = 89,478,485"):
            load_image(path)


def test_pillow_global_limit_is_not_changed(bad, valid, monkeypatch):
    before = Image.MAX_IMAGE_PIXELS
    # max_pixels=None lifts Pillow's limit for this call only: the bomb header then fails as corrupt
    # (it has no pixel data), not as a DecompressionBombError.
    with pytest.raises(ImageError, match="corrupt image data"):
        load_image(bad["huge_header"], max_pixels=None)
    assert Image.MAX_IMAGE_PIXELS == before
    # A program that lowered Pillow's limit keeps it; camkit's max_pixels governs camkit's loads.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(valid["format_png"]).size == (451, 300)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(valid["format_png"])


# ------------------------------------------------------------------------------------------------
# Discovery


@pytest.fixture
def tree(tmp_path) -> Path:
    """root/{a.jpg, B.PNG, notes.txt, ._a.jpg, sub/c.jpeg, sub/deeper/d.tif, .hidden/e.jpg, empty/,
    textonly/readme.txt}; image files are real 1x1 PNG bytes whatever their extension."""
    root = tmp_path / "root"
    for rel in ["a.jpg", "B.PNG", "._a.jpg", "sub/c.jpeg", "sub/deeper/d.tif", ".hidden/e.jpg"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (1, 1)).save(root / rel, format="PNG")
    (root / "notes.txt").write_text("x")
    (root / "empty").mkdir()
    (root / "textonly").mkdir()
    (root / "textonly/readme.txt").write_text("x")
    return root


def names(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_extensions():
    assert IMAGE_EXTENSIONS == (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
    assert is_image_path("x/Y.JPEG") and is_image_path("a.TiF") and not is_image_path("a.txt")
    assert not is_image_path("jpg")


def test_directory_recursive_sorted_skipping_hidden(tree):
    # Code-point order: "B.PNG" < "a.jpg" < "sub" ("B" is 0x42, "a" is 0x61); hidden entries skipped.
    assert names(find_images([tree]), tree) == ["B.PNG", "a.jpg", "sub/c.jpeg", "sub/deeper/d.tif"]
    assert names(find_images([tree], recursive=False), tree) == ["B.PNG", "a.jpg"]
    assert names(find_images(tree / "sub"), tree) == ["sub/c.jpeg", "sub/deeper/d.tif"]  # a single Path


def test_explicit_file_is_kept_whatever_its_extension(tree):
    assert find_images([tree / "notes.txt"]) == [tree / "notes.txt"]
    assert find_images([str(tree / "._a.jpg")]) == [tree / "._a.jpg"]


def test_glob_patterns(tree):
    assert names(find_images([str(tree / "*.jpg")]), tree) == ["a.jpg"]
    assert names(find_images([str(tree / "**/*.jp*g")]), tree) == ["a.jpg", "sub/c.jpeg"]
    # "**" alone: every image at any depth (directories matched by the pattern are not expanded).
    everything = ["B.PNG", "a.jpg", "sub/c.jpeg", "sub/deeper/d.tif"]
    assert names(find_images([str(tree / "**")]), tree) == everything
    assert names(find_images([str(tree / "sub/*/*.tif")]), tree) == ["sub/deeper/d.tif"]


def test_mixture_keeps_input_order_and_drops_duplicates(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    found = find_images(["root/sub/c.jpeg", "root", "./root/a.jpg", "root/*.jpg", "root/notes.txt"])
    # Relative inputs stay relative; c.jpeg comes first (given first) and is not repeated by "root";
    # "./root/a.jpg" and "root/*.jpg" name a file already listed.
    assert [p.as_posix() for p in found] == [
        "root/sub/c.jpeg", "root/B.PNG", "root/a.jpg", "root/sub/deeper/d.tif", "root/notes.txt",
    ]


def test_symlinked_directory_cycle_is_not_followed(tree):
    (tree / "sub/loop").symlink_to(tree, target_is_directory=True)
    assert names(find_images([tree]), tree) == ["B.PNG", "a.jpg", "sub/c.jpeg", "sub/deeper/d.tif"]


@pytest.mark.parametrize(
    "rel, fragment",
    [
        ("nope.jpg", "no such file or directory: {p}"),
        ("nope/*.jpg", "no such file or directory: {p}"),
        ("*.txt", "no images (jpg, jpeg, png, bmp, tif, tiff, webp, gif) match {p}"),
        ("empty", "no images (jpg, jpeg, png, bmp, tif, tiff, webp, gif) in directory {p}"),
        ("textonly", "no images (jpg, jpeg, png, bmp, tif, tiff, webp, gif) in directory {p}"),
    ],
)
def test_discovery_errors_are_one_line_and_name_the_input(tree, rel, fragment):
    p = str(tree / rel)
    with pytest.raises(ImageError) as e:
        find_images([tree / "a.jpg", p])
    assert fragment.format(p=p) in str(e.value) and "\n" not in str(e.value)


def test_non_recursive_search_of_a_folder_with_images_only_below_says_so(tree):
    assert names(find_images([tree / "sub/deeper"], recursive=False), tree) == ["sub/deeper/d.tif"]
    (tree / "only_below/x").mkdir(parents=True)
    (tree / "sub/c.jpeg").rename(tree / "only_below/x/c.jpeg")
    assert names(find_images([tree / "only_below"]), tree) == ["only_below/x/c.jpeg"]
    with pytest.raises(ImageError, match=r"in directory .*only_below \(subdirectories not searched\)"):
        find_images([tree / "only_below"], recursive=False)


def test_found_fixtures_all_load(valid):
    folder = valid["gray"].parent
    found = find_images([folder])
    assert sorted(found) == sorted(valid.values())
    for path in found:
        assert load_image(path).mode == "RGB"


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared ILSVRC sample not found at {SHARED}")
def test_real_ilsvrc_photos_discover_and_load_at_their_official_sizes():
    meta = SHARED / "metadata/ILSVRC/test"
    ids = (meta / "image_ids.txt").read_text().split()
    sizes = {
        rel: (int(w), int(h))
        for rel, w, h in (line.split(",") for line in (meta / "image_sizes.txt").read_text().split())
    }
    found = find_images([SHARED / "val"])  # ".JPEG": upper-case extensions count
    assert [p.relative_to(SHARED).as_posix() for p in found] == ids
    for path in found:
        img, info = load_image_with_info(path)
        assert img.mode == "RGB" and info.format == "JPEG"
        assert img.size == sizes[path.relative_to(SHARED).as_posix()]


def test_importing_camkit_io_does_not_import_torch():
    code = (
        "import sys, camkit.io; "
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"pipe\.jpg: not a regular file"):
        load_image(fifo)


# ------------------------------------------------------------------------------------------------
# reduce_to: JPEG previews decoded at a DCT scale (Image.draft)


def _astronaut_jpeg(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=95)  # 512 x 512
    return path


@pytest.mark.parametrize("target, scale", [((160, 160), 2), ((100, 60), 4), ((64, 64), 8), ((300, 300), 1), ((600, 600), 1)])
def test_reduce_to_decodes_jpeg_at_the_largest_scale_that_still_covers_it(tmp_path, target, scale):
    path = _astronaut_jpeg(tmp_path)
    img, info = load_image_with_info(path, reduce_to=target)
    assert img.mode == "RGB" and img.size == (512 // scale, 512 // scale)
    assert info.original_size == (512, 512) and info.size == img.size  # the stored size, not the decoded one
    full = load_image(path)
    if scale == 1:
        np.testing.assert_array_equal(np.asarray(img), np.asarray(full))
    else:  # libjpeg's scaled IDCT: close to averaging the full decode over scale x scale blocks
        blocks = np.asarray(full, dtype=np.float64).reshape(512 // scale, scale, 512 // scale, scale, 3).mean(axis=(1, 3))
        assert np.abs(np.asarray(img, dtype=np.float64) - blocks).mean() < 4.0


def test_reduce_to_keeps_exif_orientation(tmp_path):
    path = odd.write_exif_rotated_jpeg(tmp_path, 6)  # stored 96 x 64, shown 64 x 96
    img, info = load_image_with_info(path, reduce_to=(30, 30))  # min(96 // 30, 64 // 30) = 2: half scale
    assert img.size == (32, 48) and info.original_size == odd.EXIF_STORED_SIZE and info.orientation == 6
    a = np.asarray(img)
    m = odd.EXIF_MARKER // 2
    corner = a[m // 2, -(m // 2)]  # the red marker, now at the top-right
    assert corner[0] > 200 and corner[1] < 70 and corner[2] < 70, corner


def test_reduce_to_leaves_other_formats_whole(valid):
    for name in ("png16", "rgba"):
        assert load_image(valid[name], reduce_to=(2, 2)).size == load_image(valid[name]).size
