"""Image input: robust loading (any file, mode or array -> upright 8-bit RGB) and discovery of image files.

PIL and numpy only: this package is on the command-line start-up path and must not import torch.
"""

from camkit.io.discover import IMAGE_EXTENSIONS, find_images, is_image_path
from camkit.io.images import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    ImageInfo,
    load_image,
    load_image_with_info,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_FORMATS",
    "ImageInfo",
    "find_images",
    "is_image_path",
    "load_image",
    "load_image_with_info",
]
