"""Keep freed host memory for reuse, so that XLA's CPU backend stops paying
the operating system for fresh pages at every training step.

XLA's CPU runtime allocates each step's scratch memory (hundreds of MB for
the default model: every gate of every step is kept for the backward pass)
with malloc on its worker threads and frees it when the step ends. glibc
serves a request that large from a fresh `mmap` and returns it with
`munmap`, so every step faults in and zeroes about 90,000 new pages: on the
2-core CPU (2026-11-24) that was 0.2 s of kernel time in a 0.5 s step.
With one malloc arena, no mmap for large blocks, and freed memory kept
rather than trimmed, the next step reuses the same pages: kernel time fell
to about 0.02 s a step, and the small benchmark configuration trained at
18.4k characters/s instead of 15.2k.

The cost: the process keeps its peak heap until it exits, which a training
or sampling run does anyway. The CLI calls `keep_host_memory()` before JAX
starts; library users may call it first thing themselves.

    CHARLSTM_SYSTEM_MALLOC=1   leave malloc's settings alone
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_OFF = "CHARLSTM_SYSTEM_MALLOC"

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP_UP_TO = 2**31 - 1  # the largest trim threshold mallopt's int accepts


def keep_host_memory() -> bool:
    """Tune glibc's malloc as above; True if it was done. Does nothing (and
    returns False) off Linux, under another C library, or when the
    environment says not to. Call it before JAX creates its CPU threads:
    threads that have already allocated keep their own arenas."""
    if os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # One arena: XLA's threads allocate in the main heap, which can grow in
    # place; in a thread's own arena a block this large always comes from mmap.
    done = [mallopt(_M_ARENA_MAX, 1), mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)]
    return all(ok == 1 for ok in done)
