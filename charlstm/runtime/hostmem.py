"""Host memory for XLA's CPU backend: stop paying the operating system for
fresh pages at every training step, without keeping gigabytes.

XLA's CPU runtime allocates each step's scratch memory (hundreds of MB for
the default model: every gate of every step is kept for the backward pass)
with malloc on its worker threads and frees it when the step ends. glibc
serves a request that large from a fresh `mmap` and returns it with
`munmap`, so every step faults in and zeroes about 90,000 new 4 kB pages:
on the 2-core CPU (2026-11-24) that was 0.2 s of kernel time in a 0.5 s
step. Two remedies, measured on the default model (100 steps on the shipped
corpus, 2026-12-01, docs/design.md#host-memory):

- **Huge pages** (`relaunch_with_huge_pages`, what the CLI does where it
  can): glibc's `glibc.malloc.hugetlb=1` tunable backs those blocks with
  2 MB transparent huge pages, 512 times fewer faults: 34-38 s at a peak
  of 0.72-0.76 GB, against 41-47 s with glibc's defaults. A tunable is read
  when a process starts, so the command starts itself again with it set.
  Needs Linux, glibc 2.35 or newer and transparent huge pages not turned
  off (`/sys/kernel/mm/transparent_hugepage/enabled`).
- **Keeping freed memory** (`keep_host_memory`, elsewhere): one malloc
  arena, no mmap for large blocks and no trimming, so the next step reuses
  the same pages. As fast (34 s), but the process keeps its fragmented
  peak heap until it exits: 1.9-2.9 GB.

Either way, compiling leaves hundreds of MB freed in malloc's arenas
that the training threads do not reuse, so the loop hands them back to the
system once a compilation is done (`return_freed`): a first run on the
shipped corpus, with nothing in the compilation cache, peaked at 1.01 GB
without it and 0.80 GB with it (2026-12-01).

    CHARLSTM_SYSTEM_MALLOC=1   leave malloc's settings alone
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ENV_OFF = "CHARLSTM_SYSTEM_MALLOC"
TUNABLES = "GLIBC_TUNABLES"
HUGE_PAGES = "glibc.malloc.hugetlb=1"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP_UP_TO = 2**31 - 1  # the largest trim threshold mallopt's int accepts


def _opted_out() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - musl and others have none
    except (OSError, AttributeError):
        return None
    return libc


def huge_pages_possible() -> bool:
    """Whether glibc can back malloc with transparent huge pages here: glibc
    2.35 or newer (the `hugetlb` tunable) and THP not turned off."""
    libc = _glibc()
    if libc is None:
        return False
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    try:
        major, minor = (int(part) for part in libc.gnu_get_libc_version().decode().split(".")[:2])
        return (major, minor) >= (2, 35) and "[never]" not in THP_SETTING.read_text()
    except (OSError, ValueError):  # no THP setting to read, or a version this cannot parse
        return False


def _tunable() -> str | None:
    """The `glibc.malloc.hugetlb=...` entry of GLIBC_TUNABLES, if any."""
    name = HUGE_PAGES.split("=")[0] + "="
    return next((t for t in os.environ.get(TUNABLES, "").split(":") if t.startswith(name)), None)


def huge_pages_on() -> bool:
    """Whether this process started with malloc on huge pages."""
    return _tunable() == HUGE_PAGES and huge_pages_possible()


def relaunch_with_huge_pages() -> bool:
    """For a command about to train: make sure the process runs with malloc
    on transparent huge pages, starting it again (`exec`, same process id,
    same arguments) with the tunable set if it was not. Returns True if
    huge pages are on; False, having changed nothing, if they cannot be or
    the environment says not to, and the caller may fall back to
    `keep_host_memory()`. Call it before JAX starts and before anything
    worth keeping is done: the process is replaced."""
    if _opted_out() or not huge_pages_possible():
        return False
    if _tunable() is not None:
        return _tunable() == HUGE_PAGES  # set by the launch before this one, or by the user: it stands
    # The relaunched process sees the tunable and returns above: no loop.
    before = os.environ.get(TUNABLES)
    os.environ[TUNABLES] = ":".join(filter(None, (before, HUGE_PAGES)))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:  # no interpreter to start again: carry on as we are
        if before is None:
            del os.environ[TUNABLES]
        else:
            os.environ[TUNABLES] = before
    return False


def return_freed() -> bool:
    """Give the memory malloc holds freed, in every arena, back to the
    system (`malloc_trim(0)`); True if anything was returned. A no-op off
    glibc. Cheap enough for once after a compilation, not for every step."""
    libc = _glibc()
    if libc is None or _opted_out():
        return False
    return bool(libc.malloc_trim(0))


def keep_host_memory() -> bool:
    """Tune glibc's malloc to keep freed memory (see above); True if it was
    done. Does nothing (and returns False) off Linux, under another C
    library, when the environment says not to, or when the process already
    runs on huge pages (together they were no faster and kept 1.9 GB). Call
    it before JAX creates its CPU threads: threads that have already
    allocated keep their own arenas."""
    if _opted_out() or huge_pages_on():
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # One arena: XLA's threads allocate in the main heap, which can grow in
    # place; in a thread's own arena a block this large always comes from mmap.
    done = [mallopt(_M_ARENA_MAX, 1), mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)]
    return all(ok == 1 for ok in done)
