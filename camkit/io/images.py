"""Load any image a user hands camkit into one form: a fully decoded, EXIF-upright, 8-bit RGB PIL image.

Conventions of the returned image (``load_image``):

- mode ``"RGB"``, uint8 per channel, size ``(width, height)`` *after* EXIF orientation, i.e. the
  image as a photo viewer shows it; every later coordinate (maps, boxes) refers to this image.
- Fully decoded (``load()`` has run) and independent of the file: the file is closed on return, and
  a PIL image passed in is never modified (a new image is returned).
- No colour management: embedded ICC profiles are not applied, as in torchvision's ``pil_loader``
  (which the published ImageNet/CUB numbers were made with).

Mode conversions (why each one):

- ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``RGBX``, ``HSV``, ``LAB``: Pillow's ``convert("RGB")``.
  CMYK JPEGs written by Adobe software store inverted CMYK; Pillow's JPEG decoder undoes that.
- Alpha (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``) and single-colour transparency
  (``P``/``L``/``RGB`` with a ``transparency`` entry, e.g. a GIF or a PNG ``tRNS`` chunk): composited
  on **white**. Dropping alpha (what ``convert("RGB")`` and torchvision do) exposes whatever colour
  happens to sit under transparent pixels - often black, sometimes garbage left by the editor - which is
  neither what the user sees in a viewer nor anything the model was trained on. Compositing on white
  shows the model and the heatmap overlay the picture the user sees. Benchmark images are JPEGs without
  alpha, so this choice never affects published-number comparisons.
- 16-bit integer (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, e.g. 16-bit PNG/TIFF): scaled by the bit depth,
  ``v8 = round(v16 * 255 / 65535)`` (= ``round(v16 / 257)``), so 0 -> 0 and 65535 -> 255. Pillow's own
  ``convert`` clips at 255, which turns almost every 16-bit image white.
- 32-bit integer ``I``: treated as 16-bit data when all values lie in [0, 65535] (Pillow presents some
  16-bit files this way); otherwise min-max scaled to [0, 255] (a constant image gives 0).
- Float ``F``: values in [0, 1] are scaled by 255; otherwise min-max scaled to [0, 255]; NaN -> 0.

Numpy input: ``HxW``, ``HxWx1``, ``HxWx3`` (RGB) or ``HxWx4`` (RGBA), dtype uint8, bool, or float in
[0, 1]; it goes through the same conversions as a decoded file (RGBA composited on white).

Size limit: ``max_pixels`` (default ``DEFAULT_MAX_PIXELS``) is checked on the header's size, before any
pixel is decoded (``Image.open`` is lazy), so a 100000x100000 "decompression bomb" costs microseconds.

Errors: every problem a user can cause raises :class:`camkit.errors.ImageError` with a one-line
message that names the file and says what to do. Passing something that is not a path, PIL image or
numpy array is a programming error and raises ``TypeError``.

``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as the caller set it: with Pillow's default (False), truncated
files raise ImageError; a caller who set it True has chosen to accept grey-filled partial images.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camkit.errors import ImageError
from camkit.normalize import normalize_maps

#: Pillow's own default decompression-bomb limit, ``Image.MAX_IMAGE_PIXELS`` = 1024**3 // 4 // 3
#: = 89,478,485 pixels (about 9459 x 9459, i.e. 256 MiB at 3 bytes per pixel), restated so that
#: camkit's limit does not change when a program edits Pillow's global.
DEFAULT_MAX_PIXELS = 89_478_485

#: Pillow format names camkit decodes. Others that Pillow can identify (EPS, PSD, FITS, ...) are refused
#: with a "not supported" message: some need external programs (Ghostscript) or are not photos.
SUPPORTED_FORMATS = frozenset(
    {"JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "ICO", "JPEG2000", "AVIF"}
)

_EXIF_ORIENTATION = 0x0112
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Leading bytes of formats Pillow does not read, so the error can name them instead of "not an image".
_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"8BPS", "PSD"),
)
_ISO_BMFF_BRANDS = {  # bytes 8:12 of an ISO-BMFF file after b"ftyp" at 4:8
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
    b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF",
}

# Pillow's bomb check reads a module global; raising it for a caller who asks for more than Pillow's
# default is done under this lock and undone in ``finally`` (see ``_pillow_limit``).
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What was loaded, for reports.

    Attributes:
        source: the file path as given, ``"<PIL image>"`` or ``"<array HxWxC uint8>"``.
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ...) or None for in-memory input.
        mode: the Pillow mode before conversion to RGB (``"CMYK"``, ``"I;16"``, ``"P"``, ...).
        original_size: ``(width, height)`` as stored in the file, before EXIF orientation.
        orientation: the EXIF orientation tag, 1-8 (1 = upright; also 1 when absent or unreadable).
        size: ``(width, height)`` of the returned image (width and height swapped for tags 5-8).
    """

    source: str
    format: str | None
    mode: str
    original_size: tuple[int, int]
    orientation: int
    size: tuple[int, int]


def load_image(
    source: str | os.PathLike[str] | Image.Image | np.ndarray,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    reduce_to: tuple[int, int] | None = None,
) -> Image.Image:
    """Load ``source`` as a fully decoded, EXIF-upright, 8-bit RGB PIL image (see the module docstring).

    Args:
        source: a file path (JPEG, PNG, BMP, TIFF, WebP, GIF - first frame -, ...), a PIL image, or a
            numpy array ``HxW`` / ``HxWx{1,3,4}`` of uint8, bool or float in [0, 1].
        max_pixels: refuse images with more than this many pixels (width * height), checked before
            decoding; None for no limit.
        reduce_to: ``(width, height)`` for previews: a JPEG file is decoded at the smallest of libjpeg's
            1/2, 1/4, 1/8 scales that keeps it at least this large (``Image.draft``: a fraction of the
            decoding work); other sources are decoded whole. Not for model input (other pixels).

    Returns:
        A new ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageError: missing file, directory, empty file, not an image, unsupported format, permission
            denied, truncated or corrupt data, more than ``max_pixels`` pixels, no pixels, bad array.

    Example:
        >>> img = load_image(np.zeros((2, 3), np.uint8))
        >>> img.mode, img.size
        ('RGB', (3, 2))
    """
    return load_image_with_info(source, max_pixels, reduce_to=reduce_to)[0]


def load_image_with_info(
    source: str | os.PathLike[str] | Image.Image | np.ndarray,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    reduce_to: tuple[int, int] | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """Like :func:`load_image`, also returning an :class:`ImageInfo` (format, mode, pre-EXIF size, tag;
    the size as stored in the file also when ``reduce_to`` decoded it smaller)."""
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        return _from_pil(source, str(name), max_pixels, fmt=source.format, source_label="<PIL image>")
    if isinstance(source, np.ndarray):
        img, label = _array_to_pil(source)
        return _from_pil(img, label, max_pixels, fmt=None, source_label=label)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source), max_pixels, reduce_to)
    raise TypeError(
        f"load_image expects a path, a PIL image or a numpy array, not {type(source).__name__}"
    )


# --------------------------------------------------------------------------------------------------
# Files


# Files up to this size are read whole before Pillow parses them (larger ones are streamed, so an oversized
# file is refused from its header without being read).
_READ_WHOLE_BYTES = 32 << 20


def _from_path(path: Path, max_pixels: int | None, reduce_to: tuple[int, int] | None = None) -> tuple[Image.Image, ImageInfo]:
    size = _check_file(path)
    try:
        with _pillow_limit(max_pixels), open(path, "rb") as f:
            # One read: Pillow's ~40 small header reads then come from memory instead of each releasing and
            # re-taking the GIL (fewer hand-offs between the evaluator's reading threads; its effect on
            # throughput alone was not separable from this machine's noise).
            fp: BinaryIO = io.BytesIO(f.read()) if size <= _READ_WHOLE_BYTES else f
            img = _open(fp, path, max_pixels)
            if img.format not in SUPPORTED_FORMATS:
                raise ImageError(
                    f"{path}: {img.format} images are not supported; convert it to JPEG or PNG"
                )
            _check_size(img.size, str(path), max_pixels)
            stored = img.size
            if reduce_to is not None and img.format == "JPEG":
                img.draft(None, reduce_to)  # mode None: only the scale changes
            _decode(img, str(path))
            return _finish(img, str(path), str(path), img.format, own=True, stored_size=stored)
    except PermissionError:
        raise ImageError(f"{path}: permission denied; check the file's permissions") from None
    except ImageError:
        raise
    except OSError as e:  # I/O errors while reading (EIO, a file that vanished, ...)
        raise ImageError(f"{path}: cannot read the file ({_one_line(e)}); check the disk and path") from None


def _check_file(path: Path) -> int:
    """Refuse what is visibly not an image file, with the specific reason, before opening it; its size in bytes."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; check the permissions of its folders") from None
    except (OSError, ValueError) as e:  # e.g. name too long, embedded NUL
        raise ImageError(f"{path}: cannot access the file ({_one_line(e)}); check the path") from None
    if path.is_dir():
        raise ImageError(
            f"{path}: is a directory, not an image file; pass an image file "
            "(camkit.io.find_images lists the images in a directory)"
        )
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or stream forever
        raise ImageError(f"{path}: not a regular file; pass an image file")
    if st.st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes); re-download or re-export the image")
    return st.st_size


def _open(fp: BinaryIO, path: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) with its failures turned into one-line ImageErrors."""
    try:
        with warnings.catch_warnings():
            # Pillow warns for sizes above its own limit; camkit checks the size itself right after.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as e:
        # Pillow refuses above twice its global limit before camkit sees the size (only when
        # max_pixels is below that limit, see _pillow_limit), so its message gives the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(found.group(1)):,}" if found else "more"
        raise ImageError(
            f"{path}: too many pixels ({count} > max_pixels = {max_pixels or 0:,}); "
            "downscale the image or raise max_pixels"
        ) from None
    except UnidentifiedImageError:
        fp.seek(0)
        raise ImageError(f"{path}: {_describe_unreadable(fp.read(512))}") from None
    except (SyntaxError, ValueError, struct.error, EOFError) as e:
        raise ImageError(
            f"{path}: corrupt image header ({_one_line(e)}); re-download or re-export it"
        ) from None


def _describe_unreadable(head: bytes) -> str:
    """Say what a file Pillow cannot identify seems to be, and what to do."""
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return f"{fmt} files are not supported; convert it to JPEG or PNG"
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BMFF_BRANDS:
        fmt = _ISO_BMFF_BRANDS[head[8:12]]
        return f"{fmt} images are not supported by this Pillow build; convert it to JPEG or PNG"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "is an HTML page, not an image (a failed download?); download the image itself"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            text = e.start >= len(head) - 3  # a multi-byte character cut by the 512-byte window
        else:
            text = True
        if text:
            return "is a text file, not an image; pass a JPEG, PNG, BMP, TIFF, WebP or GIF image"
    return "not an image (Pillow cannot identify its format); pass a JPEG, PNG, BMP, TIFF, WebP or GIF image"


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Let Pillow open and decode images up to ``max_pixels`` when that exceeds its global limit.

    Pillow raises DecompressionBombError above ``2 * Image.MAX_IMAGE_PIXELS`` on its own, so a caller
    asking for more (or for no limit) needs that global lifted. It is lifted only for such calls, under
    a lock, and restored in ``finally``: library users keep Pillow's protection in their own code.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or (max_pixels is not None and max_pixels <= limit):
        yield
        return
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # camkit checks against max_pixels itself
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


# --------------------------------------------------------------------------------------------------
# Shared by files, PIL images and arrays


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image has no pixels ({w}x{h}); pass a non-empty image")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(
            f"{name}: too many pixels ({w}x{h} = {w * h:,} > max_pixels = {max_pixels:,}); "
            "downscale the image or raise max_pixels"
        )


def _decode(img: Image.Image, name: str) -> None:
    """Decode all pixel data now, so truncation and corruption surface here as ImageError."""
    try:
        img.load()
    except Image.DecompressionBombError as e:  # a later GIF/TIFF frame can be larger than the header
        raise ImageError(f"{name}: too many pixels ({_one_line(e)}); downscale the image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as e:
        msg = _one_line(e)
        if "truncated" in msg:
            # Pillow says "image file is truncated (N bytes not processed)"; keep only the detail.
            detail = msg.replace("image file is truncated", "").strip(" ()")
            what = "truncated image file" + (f" ({detail})" if detail else "")
        elif "decoder" in msg and "not available" in msg:
            raise ImageError(
                f"{name}: this Pillow build cannot decode {img.format} ({msg}); convert it to JPEG or PNG"
            ) from None
        else:
            what = f"corrupt image data ({msg})"
        raise ImageError(f"{name}: {what}; re-download or re-export the image") from None


def _from_pil(
    img: Image.Image, name: str, max_pixels: int | None, fmt: str | None, source_label: str
) -> tuple[Image.Image, ImageInfo]:
    _check_size(img.size, name, max_pixels)
    _decode(img, name)  # an Image.open() result may still be lazy
    return _finish(img, name, source_label, fmt)


def _finish(
    img: Image.Image, name: str, source_label: str, fmt: str | None, own: bool = False,
    stored_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """EXIF-orient, then convert to RGB; ``img`` is decoded and left unmodified unless ``own`` (camkit
    opened it from a file: an upright RGB image is then handed back as it is, without a copy).
    ``stored_size``: the file's size when it was decoded at a reduced scale."""
    original_size, mode = stored_size or img.size, img.mode
    orientation = _orientation(img)
    # exif_transpose also deletes the tag from its result, so nothing downstream rotates twice.
    upright = ImageOps.exif_transpose(img) if orientation != 1 else img
    rgb = _to_rgb(upright, name)
    if rgb is img and not own:  # already upright RGB: still hand back a new image, never the caller's
        rgb = img.copy()
    info = ImageInfo(
        source=source_label,
        format=fmt,
        mode=mode,
        original_size=original_size,
        orientation=orientation,
        size=rgb.size,
    )
    return rgb, info


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block is ignored, as photo viewers do
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    mode = img.mode
    if mode == "RGB" and img.info.get("transparency") is None:
        return img
    if mode in _UINT16_MODES:
        return _gray_to_rgb(_uint16_to_uint8(np.asarray(img)))
    if mode == "I":
        return _gray_to_rgb(_int_to_uint8(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(img)))
    try:
        if mode in _ALPHA_MODES or img.info.get("transparency") is not None:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, _WHITE)
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(
            f"{name}: cannot convert Pillow mode {mode} to RGB ({_one_line(e)}); "
            "save the image as 8-bit RGB"
        ) from None


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")


def _uint16_to_uint8(a: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535) = round(v / 257) = (v + 128) // 257 in exact integer arithmetic.
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _int_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.size and a.min() >= 0 and a.max() <= 65535:
        return _uint16_to_uint8(a)
    return _minmax_to_uint8(a.astype(np.float64))


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.where(np.isfinite(a), a, 0.0).astype(np.float64)
    if a.size and a.min() >= 0.0 and a.max() <= 1.0:
        return np.round(a * 255.0).astype(np.uint8)
    return _minmax_to_uint8(a)


def _minmax_to_uint8(a: np.ndarray) -> np.ndarray:
    """The whole image (every pixel and channel together) stretched to 0-255; a constant one is all 0."""
    if not a.size:
        return np.zeros(a.shape, np.uint8)
    unit = normalize_maps(a.reshape(1, -1), "minmax").reshape(a.shape)
    return np.round(unit * 255.0).astype(np.uint8)


def _array_to_pil(a: np.ndarray) -> tuple[Image.Image, str]:
    """Numpy ``HxW`` / ``HxWx{1,3,4}`` (uint8, bool, float in [0, 1]) -> PIL L/RGB/RGBA, and a label."""
    label = f"<array {'x'.join(map(str, a.shape))} {a.dtype}>"
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        hint = (
            " (it looks channels-first: use a.transpose(1, 2, 0))"
            if a.ndim == 3 and a.shape[0] in (1, 3, 4)
            else ""
        )
        raise ImageError(f"{label}: expected an HxW, HxWx3 (RGB) or HxWx4 (RGBA) array{hint}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ImageError(
                f"{label}: float arrays must hold values in [0, 1]; divide by 255 or pass uint8"
            )
        a = np.round(a.astype(np.float64) * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"{label}: expected dtype uint8, bool or float in [0, 1]; convert the array")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{label}: image has no pixels; pass a non-empty array")
    return Image.fromarray(np.ascontiguousarray(a)), label


def _one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split())
