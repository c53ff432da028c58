"""Freed memory kept for the next training step, instead of handed back to the kernel.

glibc's ``malloc`` serves blocks of more than its mmap threshold (a few MiB by default) with fresh
mappings and unmaps them when freed, and returns free memory at the top of its heap to the kernel.
A training step on CPU allocates and frees tensors of the same sizes again and again (a float batch
of 1,024 CIFAR-10 images in gray is 4 MiB, the shuffled training set of an epoch 41 MiB), so each one
comes back as fresh pages that the kernel must fault in and zero: about 27,000 page faults an epoch
for the 001 MLP, and 8% of its epoch time (docs/performance.md). :func:`reuse_freed_memory` raises
both thresholds, so blocks up to :data:`MMAP_THRESHOLD` come from the heap and stay there for reuse.

The process's resident memory then stays at its peak rather than shrinking between steps. It is a
setting of the whole process, so ``trainlab`` applies it where it owns the process: the command
line and its worker processes, not on import into a user's notebook.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MMAP_THRESHOLD = 64 << 20  # bytes: blocks up to this size come from the heap (glibc accepts up to 64 MiB)
TRIM_THRESHOLD = 1 << 30  # bytes of free memory at the heap's top that glibc keeps rather than returns
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h


@functools.cache
def reuse_freed_memory() -> bool:
    """Keep freed blocks up to :data:`MMAP_THRESHOLD` in this process's heap for reuse; True when
    the C library took the setting (glibc), False where it has no ``mallopt`` (macOS, musl)."""
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
