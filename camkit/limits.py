"""Up-front checks that a request fits in memory, so a too-large input fails in milliseconds with one
line instead of being killed by the kernel's OOM killer minutes later.

- :func:`available_memory_bytes`: what this process can still allocate: ``MemAvailable`` from
  ``/proc/meminfo`` (``os.sysconf`` free pages elsewhere), capped by a cgroup v2/v1 memory limit
  when the process runs in a container.
- :func:`activation_bytes` / :func:`estimate_input_bytes`: a network's activation memory is measured
  once per model by a cheap probe (one forward of a ``PROBE_SIZE`` square image, hooks summing the
  output sizes of the leaf modules) and scaled by pixel count x batch size. Convolutional activations
  grow with the number of input pixels, so the scaling is close (strides round the map sizes).
  Two figures: with ``gradients=True`` (training, Grad-CAM & co.) autograd keeps about every
  layer's output for the backward pass and the backward adds their gradients, so the estimate is
  twice their sum; a forward without gradients keeps only a few tensors alive at once, estimated as
  4x the largest one (input, output, a residual branch, allocator slack). On EfficientNet-Lite0
  the measured peaks were 0.82 GB without gradients at 1536 px (estimate 0.88) and about 1.9 GB
  with a backward at 1024 px (estimate 2.1).
- :func:`check_input_size`: raises :class:`~camkit.errors.ParameterError` naming ``input_size`` when
  the estimate exceeds the available memory, with the largest size that fits.
- :func:`check_maps_memory`: the same for ``k`` full-resolution float32 maps of one photo.

The estimates are deliberately simple; they are meant to refuse what cannot possibly run (a 20000-px
input), not to predict the peak to the megabyte.
"""

from __future__ import annotations

import math
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from camkit.errors import ParameterError

if TYPE_CHECKING:
    import torch

#: Side of the square image the activation probe runs on (small enough to cost milliseconds; large
#: enough for networks with a minimum input such as Inception-v3's 75 px).
PROBE_SIZE = 128

#: Fraction of the available memory a run may plan to use (the rest: weights, allocator slack, the OS).
USABLE_FRACTION = 0.8

_GB = 1024**3

# model -> (bytes per input pixel with gradients, without), per probe; weak so models can be freed.
_PROBES: weakref.WeakKeyDictionary[object, tuple[float, float]] = weakref.WeakKeyDictionary()


def available_memory_bytes() -> int | None:
    """Bytes this process can still allocate without swapping, or None when unknown."""
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    limit = _cgroup_headroom()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max":
                return None
            limit, usage = int(raw), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= 1 << 60:  # v1 reports "no limit" as a huge number
            return None
        return max(limit - usage, 0)
    return None


def activation_bytes(model: torch.nn.Module) -> tuple[float, float] | None:
    """Bytes of activations per input pixel and image: ``(with gradients, without)``.

    Measured once per model (cached) by a forward of a ``PROBE_SIZE`` square zero image in eval mode
    without gradients; the model's train/eval mode is restored. None if the probe forward fails
    (an unusual model): callers then skip the check rather than refuse.
    """
    try:
        return _PROBES[model]
    except (KeyError, TypeError):
        pass
    import torch

    sizes: list[int] = []

    def record(_module, _inputs, output) -> None:
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                sizes.append(t.numel() * t.element_size())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, dtype=dtype, device=device)
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception:  # noqa: BLE001 - a probe failure must not block a run the model may handle
        return None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pixels = float(PROBE_SIZE * PROBE_SIZE)
    inp = 3 * pixels * 4
    result = ((2 * sum(sizes) + inp) / pixels, (4 * max(sizes, default=0) + inp) / pixels)
    try:
        _PROBES[model] = result
    except TypeError:
        pass
    return result


def estimate_input_bytes(model: torch.nn.Module, input_size: int, batch_size: int = 1, *, gradients: bool = False) -> int | None:
    """Estimated activation bytes of ``batch_size`` square ``input_size`` images (None if unknown)."""
    per_pixel = activation_bytes(model)
    if per_pixel is None:
        return None
    return int(per_pixel[0 if gradients else 1] * input_size * input_size * batch_size)


def check_input_size(
    model: torch.nn.Module,
    input_size: int,
    batch_size: int = 1,
    *,
    gradients: bool = False,
    param: str = "input_size",
) -> None:
    """Refuse an ``input_size`` (square side, pixels) whose activations cannot fit in memory.

    Args:
        model: the network that will run (probed once, see :func:`activation_bytes`).
        input_size: side of the square network input.
        batch_size: images per forward pass.
        gradients: True for training or gradient methods (Grad-CAM & co.), which keep every
            layer's output for the backward pass.
        param: the parameter name to report (``"input_size"``).

    Raises:
        ParameterError: ``input_size`` or ``batch_size`` not a positive integer, or the estimate
            (``needs ~X GB ... but Y GB are available``) above ``USABLE_FRACTION`` of the available
            memory; the message gives the largest input size that fits.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ParameterError(param, input_size, "must be a positive integer number of pixels (e.g. 224)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", batch_size, "must be a positive integer")
    need = estimate_input_bytes(model, input_size, batch_size, gradients=gradients)
    avail = available_memory_bytes()
    if need is None or avail is None or need <= USABLE_FRACTION * avail:
        return
    per_image_pixel = need / (input_size * input_size * batch_size)
    fits = int(math.sqrt(USABLE_FRACTION * avail / (per_image_pixel * batch_size)))
    images = "one image" if batch_size == 1 else f"a batch of {batch_size}"
    hint = f"use {fits} or less" if fits >= 1 else "free memory or use a smaller batch"
    if batch_size > 1 and fits >= 1:
        hint += " or smaller batches"
    raise ParameterError(param, input_size, f"is too large: needs ~{need / _GB:.1f} GB for {images} but {avail / _GB:.1f} GB are available; {hint}")


def check_maps_memory(k: int, width: int, height: int, *, param: str = "topk") -> None:
    """Refuse ``k`` float32 maps of a ``width x height`` photo (plus their overlay) that cannot fit."""
    need = 4 * k * width * height * 2  # the maps and one normalised copy while drawing or saving
    avail = available_memory_bytes()
    if avail is None or need <= USABLE_FRACTION * avail:
        return
    fits = max(int(USABLE_FRACTION * avail // (8 * width * height)), 0)
    raise ParameterError(
        param, k,
        f"is too large: {k} maps of a {width}x{height} image need ~{need / _GB:.1f} GB but {avail / _GB:.1f} GB "
        f"are available; use {fits} or less, or downscale the image",
    )
