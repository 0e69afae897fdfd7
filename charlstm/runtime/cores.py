"""The cores a process may keep busy, read without importing JAX.

`charlstm train` splits the CPU into devices by this count
(`cpu_devices.py`), and the benchmarks give PyTorch the same number of
threads: a child process that times PyTorch must not import JAX to learn
it (that would change the memory of the process being compared), hence a
module of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def cores(cgroups: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> int:
    """The cores this process may keep busy: its affinity, or fewer where a
    cgroup's CPU quota allows less (a container started with `--cpus 1`
    sees every core of its host but is given one core's time)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota(cgroups, membership)
    return affinity if quota is None else max(1, min(affinity, int(quota)))


def cpu_quota(cgroups: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time the process's cgroup and those above it allow
    (the smallest quota on the way to the root), or None where none is set
    or the system does not say. cgroup v2 (`cpu.max`: "QUOTA PERIOD", or
    "max") and v1 (`cpu.cfs_quota_us`, -1 for none, over `cpu.cfs_period_us`)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:  # "0::/path" (v2) or "ID:cpu,cpuacct:/path" (v1)
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            base = cgroups if (cgroups / "cgroup.controllers").exists() else cgroups / "unified"
            quotas += _along(base, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            quotas += _along(cgroups / "cpu", path, _v1_quota)
    return min(quotas, default=None)


def _along(base: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas set in the cgroup at `base`/`path` and every one above it."""
    found = []
    folder = base / path.strip("/")
    while True:
        quota = read(folder)
        if quota is not None:
            found.append(quota)
        if folder == base or base not in folder.parents:
            return found
        folder = folder.parent


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" or int(period) <= 0 else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
