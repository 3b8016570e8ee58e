"""GNU OpenMP's busy-wait after each parallel region, shortened for camkit's command-line runs.

When a parallel region ends, libgomp's idle worker threads spin ``GOMP_SPINCOUNT`` iterations before
they sleep: 300,000 when neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY`` is set (libgomp manual,
"GOMP_SPINCOUNT"), which is milliseconds of a core. PyTorch's x86-64 wheels run their intra-op threads
on libgomp. ``camkit evaluate`` hands each batch's per-image work (boxes, reading the next images) to
its helper threads the moment a forward ends, so while the forward's worker spins, the helpers share
the remaining core: measured on a 2-core VM, the per-batch work between two forwards took 28-36 ms
with the default and 22-26 ms with 20,000 spins (alternating processes), while the forward itself ran at
the same speed (median ratio 0.99 over 12 randomly ordered process pairs, within the VM's noise).
20,000 spins still cover the microsecond gaps between the ops of a forward, where spinning pays.

libgomp reads the variable once, when it is loaded (with ``import torch``), so this must run before
torch is imported: the CLI calls :func:`apply_openmp_tuning` first thing. A value the user set (or an
``OMP_WAIT_POLICY``) is left alone; ``CAMKIT_NO_OPENMP_TUNING=1`` opts out. PyTorch's own CPU launcher
(``torch.backends.xeon.run_cpu``) does the same for Intel's OpenMP when it preloads it (``KMP_BLOCKTIME=1``).
"""

from __future__ import annotations

import os
import sys

OPT_OUT_ENV = "CAMKIT_NO_OPENMP_TUNING"

#: Busy-wait iterations of an idle libgomp thread before it sleeps.
SPIN_COUNT = 20_000


def apply_openmp_tuning() -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` for this process; True if it now takes effect.

    False (and nothing set) when torch is already imported (libgomp has read its settings), when
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is set, or when ``CAMKIT_NO_OPENMP_TUNING`` is set to
    anything but ``""``/``"0"``. Child processes (DataLoader workers, torchrun's ranks) inherit it.
    """
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return False
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
