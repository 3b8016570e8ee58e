"""Shared fixtures: the embedded model (loaded once), the real ILSVRC sample, hand-annotated photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Limit intra-op threads so parallel helpers/CI runs of the suite behave the same on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "ilsvrc_val_sample"

# Objects in scikit-image's bundled photos, annotated by hand on a 50-pixel grid:
# (sample name, ImageNet classes that name the object, box x0, y0, x1, y1 inclusive, original pixels).
HAND_BOXES = {
    "chelsea": ((281, 282, 285), (10, 0, 400, 299)),  # the cat's head and chest (451x300)
    "coffee": ((967, 968), (172, 18, 420, 300)),  # the espresso cup, saucer excluded (600x400)
    "motorcycle": ((665, 670), (92, 95, 688, 452)),  # moped / motor scooter: the whole bike (741x500)
}


def shared_sample_or_skip() -> Path:
    if not (SHARED_SAMPLE / "val").is_dir():
        pytest.skip(f"real ILSVRC sample not found at {SHARED_SAMPLE} (needs ../shared beside the repository)")
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def lite0():
    from camkit.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def ilsvrc_sample() -> Path:
    return shared_sample_or_skip()
