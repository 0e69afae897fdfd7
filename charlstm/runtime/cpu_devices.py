"""The CPU as two devices: how training uses both cores of a small machine.

On one device XLA's CPU runtime runs a step's operations one after another,
each matrix product spread over the cores; the rest of each character's
work (the gates, the cell update, the copies into the saved sequences) is
too small to spread, and the cores take turns with it. Two devices run two
programs at once. So `charlstm train` makes two devices of the CPU and
splits each batch over them as it splits one over GPUs
(`training/distributed.py`: half the streams each, one all-reduce of the
gradients a step), and the small operations of one half run while the
other half's run. On the 2-core CPU this trained the default model about
19% faster (the command itself, 100 steps, alternating runs, 2026-12-03)
and the plain cell 13-23% (docs/benchmarks.md). Four devices on two cores
were no faster than two. More cores were not measured; `--devices N` asks
for N. The cores counted are those the process may keep busy: its CPU
affinity, and no more than a container's CPU quota allows (`cores`).

The losses then agree with a one-device run to float32 rounding, not bit
for bit (the gradients are summed in another order), as on any other
layout; a run resumed on the same layout continues bit for bit, and a
resume keeps the layout its checkpoint records (`distributed.make_mesh`).

JAX reads the count once, when its backends start, so this is for a
command to call before anything touches a device; the API leaves the
caller's JAX as it finds it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import jax

# The devices a CPU of two cores or more is split into when none are asked for.
SPLIT = 2


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


def chosen_elsewhere() -> bool:
    """Whether the user already set how many devices JAX makes of the CPU:
    in the environment, or with `jax.config.update("jax_num_cpu_devices", N)`
    in this process."""
    return (
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or "JAX_NUM_CPU_DEVICES" in os.environ
        or getattr(jax.config, "jax_num_cpu_devices", -1) >= 0
    )


def split_the_cpu(devices: int | None = None) -> None:
    """Have JAX make `devices` devices of the CPU (default: `SPLIT` where the
    process may use two cores or more). Nothing where the user chose a count
    or JAX's backends have already started; what a GPU or TPU backend trains
    on is unaffected (only the CPU's devices are counted here)."""
    count = devices if devices is not None else (SPLIT if cores() >= 2 else 1)
    if count <= 1 or chosen_elsewhere():
        return
    # Where the backends are running the count is fixed for this process.
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", count)
