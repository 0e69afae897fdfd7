"""The memory a device has free, for a check before a model is built.

A model far larger than the machine (`--hidden 100000000`: 4e10 parameters,
160 GB of weights alone) did not fail: XLA's CPU backend waited on its
allocations with the process idle, deaf to Ctrl-C, until killed (a
walkthrough, 2026-12-05). So a new run's size is checked against what is
free before anything is allocated (`training/run.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def free_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The bytes the first local device can still allocate: a GPU's or TPU's
    own memory where JAX reports it, else the host's available memory
    (Linux's MemAvailable, which counts the page cache it can drop); None
    where neither is known."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # given in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    # macOS names no available pages: all of its memory is the bound there,
    # which still refuses the model far past the machine whose allocations
    # hung (an audit, 2026-12-06: the check was off on macOS and Windows).
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _windows_available()


def _windows_available() -> int | None:
    """Windows's available physical memory (GlobalMemoryStatusEx), or None
    elsewhere or where it cannot be asked."""
    if os.name != "nt":
        return None
    import ctypes

    class MemoryStatus(ctypes.Structure):  # MEMORYSTATUSEX
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            *((name, ctypes.c_ulonglong) for name in ("total", "available", "pagefile", "free_pagefile")),
            *((name, ctypes.c_ulonglong) for name in ("virtual", "free_virtual", "free_extended")),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    try:
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return None
    except (AttributeError, OSError):
        return None
    return int(status.available)
