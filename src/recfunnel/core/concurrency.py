"""Process-wide rules for numba's parallel kernels, shared by every package that has one.

numba's OpenMP threading layer slows torch down by an order of magnitude afterwards in the same
process on this kind of machine (two OpenMP runtimes' worker threads fight over the cores), so
recfunnel's parallel kernels use the ``workqueue`` layer (:data:`NUMBA_THREADING_LAYER`, unless
the user set ``NUMBA_THREADING_LAYER``). That layer does not allow two threads to launch a
parallel kernel at once, so every launch holds :data:`PARALLEL_KERNEL_LOCK`.

Nothing here imports numba: ``core`` stays free of heavy libraries.
"""

from __future__ import annotations

import threading

#: The numba threading layer recfunnel's kernels run on.
NUMBA_THREADING_LAYER = "workqueue"
#: Held around every launch of a numba ``parallel=True`` kernel (one at a time per process).
PARALLEL_KERNEL_LOCK = threading.Lock()

__all__ = ["NUMBA_THREADING_LAYER", "PARALLEL_KERNEL_LOCK"]
