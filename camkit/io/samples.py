"""Real photos bundled with scikit-image, by name, as files on disk (no download).

``sample_path("chelsea")`` is the path of scikit-image's ``chelsea.png`` (a tabby cat), usable by
``camkit explain`` from a fresh install without any network.
"""

from __future__ import annotations

from pathlib import Path

# Photos that scikit-image ships inside its wheel (others in skimage.data need a download).
SAMPLES = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "camera": "camera.png",
}


def sample_path(name: str) -> Path:
    """Path of a bundled sample photo; raises KeyError for an unknown name."""
    import skimage

    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    p = Path(skimage.__file__).parent / "data" / SAMPLES[name]
    if not p.is_file():
        raise FileNotFoundError(f"scikit-image does not ship {p.name} in this version")
    return p
