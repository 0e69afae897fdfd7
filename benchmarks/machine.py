"""What a benchmark ran on, in one line for its table and its JSON
(`describe`), and all a result file records to be read and run again
(`provenance`).

The machines this project is measured on change from one session to the
next (an AMD EPYC with 1 MB of L2 a core one day, an Intel Xeon with 2 MB
and AMX the next), and ratios move with them: batch-1 sampling, which reads
every weight once a character, runs about twice as fast where the weights
fit in a core's L2 cache. So every result names the CPU, its cores, its L2
cache and the vector units that matter here, not only `platform.machine()`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# The instruction sets that change which kernels the frameworks pick.
_NOTABLE = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo; empty where there is none (macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _l2_per_core() -> str | None:
    """cpu0's level-2 cache size as the kernel spells it ("2048K"), or None."""
    caches = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(caches.glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                return (index / "size").read_text().strip()
        except OSError:
            continue
    return None


def describe() -> str:
    """e.g. "Intel(R) Xeon(R) Processor, 2 cores, x86_64, L2 2048K (cpu0's), avx2 avx512f avx512_bf16 amx_bf16":
    the cores this process may use, and cpu0's L2 (shared by several cores on some CPUs)."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or "unknown CPU"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [name, f"{usable} cores", platform.machine()]
    l2 = _l2_per_core()
    if l2:
        parts.append(f"L2 {l2} (cpu0's)")
    flags = set((info.get("flags") or info.get("Features") or "").split())
    notable = [flag for flag in _NOTABLE if flag in flags]
    if notable:
        parts.append(" ".join(notable))
    return ", ".join(parts)


def commit(where: Path | None = None) -> str | None:
    """The commit of the checkout at `where` (default: this one), with
    "+changes" where its tracked files differ; None outside git."""
    here = where or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.returncode == 1 else "")


def versions(packages: tuple[str, ...] = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")) -> dict[str, str]:
    """The installed version of each of `packages` that this Python has."""
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def provenance() -> dict[str, object]:
    """What every result file records, so that it can be read and run again:
    when, on what, with which versions and code, and the command line."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": describe(),
        "python": platform.python_version(),
        "versions": versions(),
        "commit": commit(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
    }
