"""The CPU as two devices: how training uses both cores of a small machine.

On one device XLA's CPU runtime runs a step's operations one after another,
each matrix product spread over the cores; the rest of each character's
work (the gates, the cell update, the copies into the saved sequences) is
too small to spread, and the cores take turns with it. Two devices run two
programs at once. So `charlstm train` makes two devices of the CPU and
splits each batch over them as it splits one over GPUs
(`training/distributed.py`: half the streams each, one all-reduce of the
gradients a step), and the small operations of one half run while the
other half's run. On the 2-core CPU this trained the default cell 19-24%
faster and the plain cell 13-23% (docs/benchmarks.md, "The CPU as two
devices", 2026-12-03). Four devices on two cores
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

import os
import warnings

import jax

from charlstm.arguments import whole_number
from charlstm.errors import ConfigError, LateSplitWarning
from charlstm.flags import flag
from charlstm.runtime.cores import cores

# The devices a CPU of two cores or more is split into when none are asked for.
SPLIT = 2
# Devices of one CPU asked for (each a share of its cores): far past its cores on any machine.
MAX_CPU_DEVICES = 1024

# The count split_the_cpu set in this process, if any: a later call may
# change its own choice (split_the_cpu() then split_the_cpu(4) kept 2,
# silently), never the user's.
_set_here: list[int] = []


def chosen_elsewhere() -> bool:
    """Whether the user already set how many devices JAX makes of the CPU:
    in the environment, or with `jax.config.update("jax_num_cpu_devices", N)`
    in this process."""
    in_config = getattr(jax.config, "jax_num_cpu_devices", -1)
    return (
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        # -1 (or empty) is JAX's own "not set" (a walkthrough, 2026-12-07: it ran on one device).
        or os.environ.get("JAX_NUM_CPU_DEVICES", "").strip() not in ("", "-1")
        or (in_config >= 0 and _set_here[-1:] != [in_config])
    )


def split_the_cpu(devices: int | None = None) -> None:
    """Have JAX make `devices` devices of the CPU (default: `SPLIT` where the
    process may use two cores or more; a second call before JAX starts
    replaces the first's count). Nothing where the user chose a count
    or JAX's backends have already started; what a GPU or TPU backend trains
    on is unaffected (only the CPU's devices are counted here). A call that
    comes after JAX has started, where JAX has another count, warns
    (RuntimeWarning): training would otherwise use fewer devices unseen."""
    if devices is not None and whole_number(devices, "devices") < 1:
        raise ConfigError(f"{flag('devices')} must be >= 1, got {devices}")
    if devices is not None and devices > MAX_CPU_DEVICES:  # past 2**31 JAX's backend failed with a traceback
        raise ConfigError(f"{flag('devices')} must be at most {MAX_CPU_DEVICES:,}, got {devices:,}")
    count = devices if devices is not None else (SPLIT if cores() >= 2 else 1)
    if chosen_elsewhere() or (count <= 1 and not _set_here):  # one device: JAX's own default
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
        _set_here.append(count)
    except RuntimeError:  # the backends are running: the count is fixed for this process
        try:
            # Only where training runs on the CPU (a GPU's is unaffected; JAX_PLATFORMS=cuda has no CPU backend).
            has = len(jax.devices("cpu")) if jax.default_backend() == "cpu" else count
        except RuntimeError:
            return
        if has != count:
            warnings.warn(
                f"split_the_cpu() came after JAX started: training uses the CPU's {has} device"
                f"{'s' if has > 1 else ''} JAX already has, not {count}; call it before anything uses JAX",
                LateSplitWarning,
                stacklevel=2,
            )
